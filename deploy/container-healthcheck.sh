#!/bin/bash
# Container health probe for clever-auth (the image's HEALTHCHECK). The image has no curl, so
# this speaks HTTP/1.1 over bash's /dev/tcp.
#
# Exit 0 when the host answers GET /health/clever-auth with 200 (pass, warn) or 503 (fail):
# the process is alive and reporting; a 503 says Clever or Key Vault cannot give it a token
# yet, which a restart would not fix (the host recovers on its own). Exit 1 when nothing
# answers within the timeout or the status is anything else.
#
# The port follows the host's own choice: CLEVER_AUTH_LISTEN's port, else PORT, else
# WEBSITES_PORT, else 8080. The probe goes to 127.0.0.1, which a listen address of 0.0.0.0 or
# 127.0.0.1 both serve.
set -u

health_path=/health/clever-auth
timeout_secs=${CLEVER_AUTH_HEALTHCHECK_TIMEOUT_SECS:-4}

if [ -n "${CLEVER_AUTH_LISTEN:-}" ]; then
  port=${CLEVER_AUTH_LISTEN##*:}
else
  port=${PORT:-${WEBSITES_PORT:-8080}}
fi

if ! { exec 3<>"/dev/tcp/127.0.0.1/${port}"; } 2>/dev/null; then
  echo "clever-auth-healthcheck: nothing listens on 127.0.0.1:${port}"
  exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$health_path" "$port" >&3

status_line=
if ! IFS= read -r -t "$timeout_secs" status_line <&3; then
  echo "clever-auth-healthcheck: no answer from 127.0.0.1:${port} within ${timeout_secs}s"
  exit 1
fi
status_line=${status_line%$'\r'}

case "$status_line" in
  "HTTP/1.1 200 "* | "HTTP/1.1 503 "*)
    echo "clever-auth-healthcheck: ${status_line}"
    exit 0
    ;;
  *)
    echo "clever-auth-healthcheck: unexpected answer: ${status_line}"
    exit 1
    ;;
esac
