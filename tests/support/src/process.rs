//! A test's child process: a service binary or this test binary re-executed, stopped with
//! SIGTERM (graceful) or SIGKILL (no shutdown at all), and killed when the handle is dropped,
//! however the test ends.

use std::ffi::OsStr;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process, SIGKILLed and reaped on drop.
pub struct ChildProcess {
    child: Child,
    what: String,
}

impl ChildProcess {
    /// Starts `command`; panics naming `what` when it cannot start.
    pub fn spawn(what: &str, command: &mut Command) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Self {
            child,
            what: what.to_owned(),
        }
    }

    /// Re-executes this test binary to run only the test `test`, with `var` set to `value`
    /// (the test sees it and plays the child's part), output discarded.
    pub fn this_test(test: &str, var: &str, value: impl AsRef<OsStr>) -> Self {
        let exe =
            std::env::current_exe().unwrap_or_else(|e| panic!("cannot find this test binary: {e}"));
        Self::spawn(
            test,
            Command::new(exe)
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env(var, value)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    }

    /// Returns the process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Takes the stdout pipe (the command was started with `Stdio::piped()`).
    pub fn take_stdout(&mut self) -> ChildStdout {
        match self.child.stdout.take() {
            Some(out) => out,
            None => panic!("{} has no stdout pipe", self.what),
        }
    }

    /// Takes the stderr pipe (the command was started with `Stdio::piped()`).
    pub fn take_stderr(&mut self) -> ChildStderr {
        match self.child.stderr.take() {
            Some(err) => err,
            None => panic!("{} has no stderr pipe", self.what),
        }
    }

    /// Returns the exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.what))
    }

    /// Waits for the process to exit and returns its status (also after [`ChildProcess::kill`]).
    pub fn wait(&mut self) -> ExitStatus {
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.what))
    }

    /// Sends `signal` (`kill -<signal>`: `TERM`, `STOP`, `CONT`, ...).
    pub fn signal(&self, signal: &str) {
        let pid = self.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(sent.success(), "kill -{signal} {pid} ({})", self.what);
    }

    /// SIGKILL, then reaps: no shutdown, no final commit, no leaving a consumer group.
    pub fn kill(&mut self) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("cannot kill {}: {e}", self.what));
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("cannot reap {}: {e}", self.what));
    }

    /// SIGTERM (a graceful shutdown), then waits up to `timeout` for the exit; panics when the
    /// process is still running then.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?} of SIGTERM",
                self.what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Like [`ChildProcess::terminate`], for a test without a tokio runtime.
    pub fn terminate_blocking(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?} of SIGTERM",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
