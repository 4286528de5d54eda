//! A podman pod: containers sharing one network namespace, one `localhost`, as App Service's
//! sidecar layout shares one between the main container and its sidecars. Ports are published
//! and host names added on the pod, for all its containers at once.
//!
//! The pod's infra container is started by podman itself, without the `--runtime` and
//! `--ulimit` arguments the other containers get (`podman pod create` takes neither), so the
//! pod's podman commands read a containers.conf of their own that sets both.

use super::podman::{self, Container};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

pub struct Pod {
    pub name: String,
    infra: String,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pod {
    /// `podman pod create` publishing each of `ports` on a free loopback port of this machine,
    /// with `hosts` (`name:address`) in every container's /etc/hosts.
    pub fn create(ports: &[u16], hosts: &[String]) -> Result<Pod> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("containers.conf");
        let (_, nofile) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .context("reading the open-files limit")?;
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=32768:32768\"]\n\
                 [engine]\nruntime = \"runc\"\n"
            ),
        )?;
        let name = format!(
            "clever-auth-pod-{}",
            crate::fake_support::util::random_hex(6)
        );
        let mut cmd = with_conf(&conf);
        cmd.args(["pod", "create", "--name", &name]);
        for port in ports {
            cmd.args(["-p", &format!("127.0.0.1::{port}")]);
        }
        for host in hosts {
            cmd.args(["--add-host", host]);
        }
        podman::checked(&mut cmd)?;
        let mut pod = Pod {
            infra: String::new(),
            name,
            conf,
            _dir: dir,
        };
        pod.infra = podman::checked(with_conf(&pod.conf).args([
            "pod",
            "inspect",
            "--format",
            "{{.InfraContainerID}}",
            &pod.name,
        ]))?;
        Ok(pod)
    }

    /// `podman run -d --pod <this pod> <args>`, as [`Container::run`].
    pub fn run(&self, args: &[String], secret_env: &[(String, String)]) -> Result<Container> {
        let mut all = vec!["--pod".to_string(), self.name.clone()];
        all.extend(args.iter().cloned());
        Container::run_with(with_conf(&self.conf), &all, secret_env)
    }

    /// Where the pod publishes `port` on this machine (once a container has started it).
    pub fn published(&self, port: u16) -> Result<SocketAddr> {
        let text = podman::run(&["port", &self.infra, &format!("{port}/tcp")])?;
        let first = text.lines().next().unwrap_or_default().trim();
        first
            .parse()
            .with_context(|| format!("`podman port` said {text:?} for the pod's {port}"))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = with_conf(&self.conf)
            .args(["pod", "rm", "-f", "-t", "0", &self.name])
            .output();
    }
}

fn with_conf(conf: &std::path::Path) -> Command {
    let mut cmd = podman::podman();
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}
