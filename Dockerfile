# clever-auth for Azure App Service: the native wasmtime host (clever-auth-host) with the
# clever-auth component and its ahead-of-time compiled form.
#
#   docker build -t clever-auth .
#   docker run --rm -p 8080:8080 clever-auth      # http://127.0.0.1:8080/health/clever-auth
#
# No secret enters this image or its build: the Clever client id and secret come from Key Vault
# at run time (KEYVAULT_URL + the App Service managed identity). The host refuses to start if
# CLEVER_CLIENT_ID / CLEVER_CLIENT_SECRET are set as plain environment variables.
#
# Plain Dockerfile syntax (no BuildKit-only flags) so that `docker build`, `az acr build` and
# buildah/podman all build it the same way (podman/buildah: `--format docker`, since the OCI
# image format has no HEALTHCHECK).

# The two bases. CI and `az acr build` use the defaults; `cargo xtask image` passes equivalents
# made from Debian's packages where no registry serves these (xtask/src/image/).
ARG BUILD_BASE=rust:1.95-bookworm
ARG RUNTIME_BASE=debian:bookworm-slim

# ---- build: the component (wasm32-wasip2) and the host, both in release ----------------------
FROM ${BUILD_BASE} AS build
WORKDIR /src

# `cargo xtask` adds the target on demand too; here it gets its own cached layer.
RUN rustup target add wasm32-wasip2

COPY . .

# --locked: a stale Cargo.lock fails the build instead of being re-resolved inside it.
RUN cargo fetch --locked

# Writes target/wasm32-wasip2/release/clever_auth.wasm and target/release/clever-auth-host
# (see xtask/src/main.rs). CARGO_TARGET_DIR stays unset so both land under /src/target.
RUN cargo xtask build --release \
 && install -D -m 0644 target/wasm32-wasip2/release/clever_auth.wasm /app/clever_auth.wasm \
 && install -D -m 0755 target/release/clever-auth-host /app/clever-auth-host \
 && install -D -m 0755 deploy/container-healthcheck.sh /app/clever-auth-healthcheck

# Compile the component ahead of time, so a container start skips cranelift. The artifact is
# tied to this wasmtime build and to the CPU features of the build machine; at start the host
# checks it against its engine and the CPU it runs on (App Service hardware may differ from the
# build agent's) and compiles the .wasm in memory instead when it does not fit: slower start,
# same behaviour.
RUN /app/clever-auth-host --component /app/clever_auth.wasm \
      --component-cache /app/component-cache --precompile

# ---- runtime ----------------------------------------------------------------------------------
# Same Debian release as the builder, so the host's glibc dependency is met.
FROM ${RUNTIME_BASE}

# ca-certificates: the host itself trusts the Mozilla roots compiled into it (webpki-roots) plus
# --extra-ca; the system bundle is here for images built on this one that add a private CA
# (update-ca-certificates, then CLEVER_AUTH_EXTRA_CA=/etc/ssl/certs/ca-certificates.crt).
# Versions are not pinned: bookworm-slim's security updates replace them, and a pin would break
# the build when Debian drops the pinned version. apt's caches are removed here rather than left
# to the base image's docker-clean hook, which other bases lack (on a base without it, this step
# added about 80 MB of package caches to the image).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 clever-auth \
 && useradd --system --uid 10001 --gid clever-auth --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin clever-auth

# Everything is owned by root and read-only for the service user: the running host can change
# neither its code nor its compiled cache. Tokens live in the host's memory only.
COPY --from=build /app/clever_auth.wasm /app/clever_auth.wasm
COPY --from=build /app/component-cache/ /app/component-cache/
COPY --from=build /app/clever-auth-host /usr/local/bin/clever-auth-host
COPY --from=build /app/clever-auth-healthcheck /usr/local/bin/clever-auth-healthcheck

ENV CLEVER_AUTH_COMPONENT=/app/clever_auth.wasm \
    CLEVER_AUTH_COMPONENT_CACHE=/app/component-cache

# Numeric, so orchestrators can verify runAsNonRoot.
USER 10001:10001

# The host listens on 0.0.0.0:$PORT, else $WEBSITES_PORT, else 8080 (App Service sets them);
# --listen is deliberately not set here.
EXPOSE 8080

# Liveness only: healthy while the host answers GET /health/clever-auth with its health document,
# 200 (pass/warn) or 503 (fail). A 503 means "Clever or Key Vault cannot give us a token yet"; a
# restart would not fix that, and the host recovers on its own. No answer within the timeout
# (hung or dead process) or any other status is unhealthy. The image has no curl: the probe is a
# bash script using /dev/tcp. App Service ignores this and uses siteConfig.healthCheckPath.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/clever-auth-healthcheck"]

# SIGTERM (docker stop, App Service) drains open connections for --drain-secs, then exits.
ENTRYPOINT ["/usr/local/bin/clever-auth-host"]
