//! Child processes of the bench (simnode, cometgate, nginx, the ceiling) and what the bench
//! reads about them from /proc. Every child dies with its guard, so an aborted bench leaves
//! nothing listening.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    child: Child,
    pub name: String,
    /// nginx's workers outlive a SIGKILLed master, so it gets SIGTERM and a wait.
    graceful: bool,
}

impl Proc {
    /// Starts `cmd` with its output in `logs/NAME.log`.
    pub fn spawn(
        mut cmd: Command,
        name: &str,
        logs: &Path,
        graceful: bool,
    ) -> Result<Proc, String> {
        let log = File::create(logs.join(format!("{name}.log")))
            .map_err(|e| format!("cannot create the log of {name}: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc {
            child,
            name: name.to_string(),
            graceful,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited (a bad config, a port in use).
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            _ => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.graceful {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on now, and none handed out lately. Racy in principle;
/// the bench is the only thing opening ports here, and a lost race shows up as a child
/// failing to start. The kernel may give one free port twice in a row: a gateway then
/// got the same port for its listener and its metrics, refused its config (exit 2) and
/// lost a round of `lcd-shape`.
pub fn free_addr() -> SocketAddr {
    static RECENT: std::sync::Mutex<std::collections::VecDeque<u16>> =
        std::sync::Mutex::new(std::collections::VecDeque::new());
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        if recent.contains(&addr.port()) {
            continue;
        }
        if recent.len() >= 256 {
            recent.pop_front();
        }
        recent.push_back(addr.port());
        return addr;
    }
}

pub async fn wait_listening(addr: SocketAddr, proc: &mut Proc) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        proc.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not listen on {addr} within 15 s",
                proc.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finds a sibling binary of this executable (target/release/NAME), building it with cargo
/// when it is missing so that `bench` works right after a fresh checkout.
pub fn find_binary(name: &str, package: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .ok_or("no directory for the current executable")?;
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    eprintln!(
        "{name} not found next to {}; building it (release)",
        exe.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", package, "--bin", name])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of {name} failed"));
    }
    for candidate in [path.clone(), PathBuf::from("target/release").join(name)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(format!("{name} still missing after the build"))
}

/// Raises this process's open-files limit to its hard limit, for benches that hold
/// thousands of sockets; returns the limit now in force.
pub fn raise_open_files() -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Peak resident set over the process's life.
pub fn hwm_bytes(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

/// Direct children of `pid` (nginx's workers), from each process's stat line.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    // The command name may hold spaces and parentheses; fields resume
                    // after the last ')'.
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_handed_out_are_not_repeated() {
        let ports: std::collections::HashSet<u16> = (0..200).map(|_| free_addr().port()).collect();
        assert_eq!(ports.len(), 200);
    }

    #[test]
    fn open_files_limit_is_raised_to_the_hard_one() {
        let now = raise_open_files().unwrap();
        assert!(now >= 64);
        assert_eq!(
            raise_open_files().unwrap(),
            now,
            "already at the hard limit"
        );
    }

    #[test]
    fn reads_own_memory_and_children() {
        let me = std::process::id();
        let rss = rss_bytes(me).unwrap();
        assert!(rss > 0 && hwm_bytes(me).unwrap() >= rss / 2);
        let child = Command::new("sleep").arg("5").spawn().unwrap();
        let id = child.id();
        let mut guard = Proc {
            child,
            name: "sleep".into(),
            graceful: false,
        };
        assert!(children_of(me).contains(&id));
        assert!(guard.check_alive().is_ok());
        drop(guard);
        assert!(!children_of(me).contains(&id));
    }
}
