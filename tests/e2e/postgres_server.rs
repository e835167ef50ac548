//! A real PostgreSQL server for the tests: Debian's `postgresql` package (installed by
//! `scripts/install-postgres`), initialised into a temporary directory and started on
//! a free loopback port, once per test process; each test gets a database of its own.
//! As root, the server runs as the `postgres` user (PostgreSQL refuses root). The
//! server dies with the test process (`PR_SET_PDEATHSIG`), and its directory goes with
//! the next test process that finds it orphaned.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The test process's server.
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    /// Who runs the server and its tools: `None` for the current user.
    user: Option<(u32, u32)>,
    dir: PathBuf,
    /// The running server's process id, and what says it exited.
    running: std::sync::Mutex<Option<(u32, std::sync::mpsc::Receiver<()>)>>,
}

/// The user name every database is owned by.
const USER: &str = "superstep";

impl Postgres {
    /// The server, started on first use under the system's temporary directory (which
    /// the server's user can reach, wherever the checkout is).
    pub fn shared() -> &'static Postgres {
        static SERVER: OnceLock<Postgres> = OnceLock::new();
        SERVER.get_or_init(|| {
            let dir = std::env::temp_dir().join("superstep-tests");
            std::fs::create_dir_all(&dir).unwrap();
            let open = std::os::unix::fs::PermissionsExt::from_mode(0o755);
            std::fs::set_permissions(&dir, open).unwrap();
            Postgres::start(&dir)
        })
    }

    /// A new, empty database; returns its URL.
    pub fn database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let status = self
            .tool("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                &name,
            ])
            .status()
            .expect("run createdb");
        assert!(status.success(), "createdb {name} failed");
        self.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in the database of `url` (made by [`Postgres::database`]); returns
    /// what `psql` prints, one row a line, columns separated by `|`.
    pub fn query(&self, url: &str, sql: &str) -> String {
        let name = url.rsplit('/').next().unwrap();
        let output = self
            .tool("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", name, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }

    /// A server whose files are under `dir/postgres` (which the server's user must be
    /// able to reach), until the process ends.
    pub fn start(dir: &Path) -> Postgres {
        let bin = bin_dir();
        let user = (unsafe { libc::geteuid() } == 0).then(postgres_user);
        let root = dir.join("postgres");
        remove_orphans(&root);
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut server = Postgres {
            port: 0,
            bin,
            user,
            dir,
            running: std::sync::Mutex::new(None),
        };
        let data = server.dir.join("data");
        let initdb = server
            .tool("initdb")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(initdb.success(), "initdb failed");
        server.port = free_port();
        server.spawn_server();
        server
    }

    /// Crashes the server (an immediate shutdown: no checkpoint, recovery at the next
    /// start) and starts it again on the same port and data.
    pub fn restart(&self) {
        let (pid, exited) = self.running.lock().unwrap().take().expect("running");
        unsafe { libc::kill(pid as i32, libc::SIGQUIT) };
        exited
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("postgres stopped");
        self.spawn_server();
    }

    /// Starts the server from a thread that lives as long as the process, so that the
    /// server's parent-death signal comes when the process ends, not the thread.
    fn spawn_server(&self) {
        let data = self.dir.join("data");
        let mut command = self.tool("postgres");
        command
            .args(["-D", data.to_str().unwrap(), "-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.dir.display()),
            ])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        unsafe {
            command.pre_exec(|| {
                // After the change of user, which clears the setting.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The keeper copies the server's log to server.log and says when the server is
        // ready to accept connections.
        let mut log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let (ready, readiness) = std::sync::mpsc::channel();
        let (started, pid) = std::sync::mpsc::channel();
        let (exit, exited) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || {
                use std::io::{BufRead, Write};
                let mut child = command.spawn().expect("start postgres");
                let _ = started.send(child.id());
                let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
                for line in stderr.lines().map_while(Result::ok) {
                    let _ = writeln!(log, "{line}");
                    if line.contains("ready to accept connections") {
                        let _ = ready.send(());
                    }
                }
                let _ = child.wait();
                let _ = exit.send(());
            })
            .unwrap();
        let pid = pid.recv().expect("postgres spawned");
        *self.running.lock().unwrap() = Some((pid, exited));
        let started = readiness.recv_timeout(std::time::Duration::from_secs(120));
        assert!(
            started.is_ok(),
            "postgres did not start: see {}/server.log",
            self.dir.display()
        );
    }

    /// A command of the server's binaries, run as the server's user.
    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command.env_remove("PGPASSWORD").current_dir(&self.dir);
        command
    }
}

/// Where the server's binaries are: `$SUPERSTEP_POSTGRES_BIN`, or the newest Debian
/// version installed.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SUPERSTEP_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/install-postgres")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL version installed").1
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!entry.is_null(), "running as root needs a 'postgres' user");
    unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Deletes the servers' directories whose test process is gone.
fn remove_orphans(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let pid: Option<i32> = entry.file_name().to_str().and_then(|n| n.parse().ok());
        let alive = pid.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
