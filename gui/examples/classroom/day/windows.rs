//! Two real app windows (`classchat`, the release binary) under Xvfb: a student and the
//! instructor, side by side on one 2560x800 screen. Their data dirs are prepared as after
//! a first login ([`crate::common::prepare_app`], as gui/screenshots.sh's demo does), so
//! each window logs straight in with its resume token. Input is real X input (xdotool),
//! and screenshots come from ImageMagick's `import`, as in gui/screenshots.sh.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use classchat_wire::{Fingerprint, Request};

use super::ROOM;
use super::student::Student;
use crate::common::{connect, prepare_app, publish_key};

/// The student who uses the app (an account apart from the simulated ones).
const APP_STUDENT: &str = "ada";
/// Window size; the screen holds two side by side.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;
/// How long a window may take to appear.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct WindowOptions {
    /// The app binary (target/release/classchat).
    pub app_bin: PathBuf,
    /// Where the screenshots are saved.
    pub shots: PathBuf,
}

struct App {
    user: String,
    child: Child,
    window: String,
}

pub struct Windows {
    xvfb: Child,
    display: String,
    apps: Vec<App>,
    shots: PathBuf,
}

impl Windows {
    /// Seeds both app data dirs, starts Xvfb and the two windows, and opens #ROOM in each.
    pub async fn start(
        opts: &WindowOptions,
        work: &Path,
        addr: &str,
        fingerprint: Fingerprint,
        prof: &Student,
    ) -> anyhow::Result<Self> {
        for tool in ["Xvfb", "xdotool", "import"] {
            if !tool_exists(tool) {
                bail!("{tool} is missing (`make shot-deps` installs it)");
            }
        }
        // The student's account, in the class; then both users' identity keys.
        let ada = connect(addr, APP_STUDENT, "classroom-seed").await?;
        ada.request(Request::JoinRoom { name: ROOM.into(), password: None }).await?;
        let ada_key = publish_key(&ada, APP_STUDENT).await?;
        ada.close().await;
        let prof_client = prof.wait_client(Duration::from_secs(30)).await?;
        let prof_key = publish_key(&prof_client, &prof.name).await?;
        let dirs = [work.join("app-student"), work.join("app-instructor")];
        prepare_app(&dirs[0], addr, APP_STUDENT, fingerprint, &ada_key, &[]).await?;
        prepare_app(&dirs[1], addr, &prof.name, fingerprint, &prof_key, &[]).await?;

        let (xvfb, display) = start_xvfb(work)?;
        let mut windows = Self { xvfb, display, apps: Vec::new(), shots: opts.shots.clone() };
        for (i, (dir, user)) in dirs.iter().zip([APP_STUDENT, prof.name.as_str()]).enumerate() {
            let app = windows.start_app(&opts.app_bin, dir, addr, user, work, i as u32 * WIDTH).await?;
            windows.apps.push(app);
        }
        for i in 0..windows.apps.len() {
            windows.open_room(i).await?;
        }
        Ok(windows)
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn users(&self) -> Vec<String> {
        self.apps.iter().map(|a| a.user.clone()).collect()
    }

    /// The student using the app.
    pub fn student(&self) -> &str {
        APP_STUDENT
    }

    async fn start_app(
        &self,
        bin: &Path,
        dir: &Path,
        addr: &str,
        user: &str,
        work: &Path,
        x: u32,
    ) -> anyhow::Result<App> {
        let log = std::fs::File::create(work.join(format!("app-{user}.log")))?;
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir)
            .args(["--server", addr, "--user", user, "--discovery", "loopback"])
            .env("DISPLAY", &self.display)
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id().to_string();
        let mut app = App { user: user.to_owned(), child, window: String::new() };
        let deadline = Instant::now() + WINDOW_TIMEOUT;
        while app.window.is_empty() {
            if Instant::now() > deadline {
                bail!("{user}'s window did not appear within {WINDOW_TIMEOUT:?}");
            }
            if let Ok(Some(status)) = app.child.try_wait() {
                bail!("{user}'s app exited ({status}); see its log in {}", work.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            // `--all`: both conditions (xdotool's default is either).
            let out = self.xdotool(&["search", "--all", "--pid", &pid, "--name", "ClassChat"])?;
            app.window = out.lines().next().unwrap_or_default().trim().to_owned();
        }
        if self.apps.iter().any(|a| a.window == app.window) {
            bail!("{user}'s window search found another app's window ({})", app.window);
        }
        self.xdotool(&["windowmove", &app.window, &x.to_string(), "0"])?;
        self.xdotool(&["windowsize", &app.window, &WIDTH.to_string(), &HEIGHT.to_string()])?;
        // Logged straight in with the saved session: give it time to load the rooms.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(app)
    }

    /// Focuses window `i` and opens #ROOM with the quick switcher (Ctrl+K), which also
    /// focuses the composer.
    async fn open_room(&self, i: usize) -> anyhow::Result<()> {
        let w = &self.apps[i].window;
        // Without a window manager nobody hands out keyboard focus: take it explicitly.
        self.xdotool(&["windowfocus", w])?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.xdotool(&["key", "ctrl+k"])?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.xdotool(&["type", "--delay", "20", ROOM])?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.xdotool(&["key", "Return"])?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    /// Types `text` into the student's composer in #ROOM and presses Enter.
    pub async fn type_in_student(&self, text: &str) -> anyhow::Result<()> {
        self.type_in(0, text).await
    }

    /// Types `text` into the instructor's composer in #ROOM and presses Enter.
    pub async fn type_in_instructor(&self, text: &str) -> anyhow::Result<()> {
        self.type_in(1, text).await
    }

    async fn type_in(&self, i: usize, text: &str) -> anyhow::Result<()> {
        self.open_room(i).await?;
        self.xdotool(&["type", "--delay", "10", text])?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.xdotool(&["key", "Return"])?;
        Ok(())
    }

    /// Saves a screenshot of each window (showing #ROOM), returning the paths.
    pub async fn screenshots(&self) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(&self.shots)?;
        let mut out = Vec::new();
        for (i, app) in self.apps.iter().enumerate() {
            self.open_room(i).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let role = if i == 0 { "student" } else { "instructor" };
            let path = self.shots.join(format!("classroom-{role}.png"));
            let ok = Command::new("import")
                .args(["-window", &app.window])
                .arg(&path)
                .env("DISPLAY", &self.display)
                .stdin(Stdio::null())
                .status()?
                .success();
            if !ok {
                bail!("import could not capture {}'s window", app.user);
            }
            out.push(path);
        }
        Ok(out)
    }

    fn xdotool(&self, args: &[&str]) -> anyhow::Result<String> {
        let out =
            Command::new("xdotool").args(args).env("DISPLAY", &self.display).stdin(Stdio::null()).output()?;
        // `search` exits 1 when nothing matches yet.
        if !out.status.success() && args.first() != Some(&"search") {
            bail!("xdotool {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn stop(mut self) {
        for app in &mut self.apps {
            let _ = app.child.kill();
            let _ = app.child.wait();
        }
        let _ = self.xvfb.kill();
        let _ = self.xvfb.wait();
    }
}

impl Drop for Windows {
    fn drop(&mut self) {
        for app in &mut self.apps {
            let _ = app.child.kill();
        }
        let _ = self.xvfb.kill();
    }
}

/// Starts Xvfb on a free display (it picks one and prints its number: `-displayfd`).
fn start_xvfb(work: &Path) -> anyhow::Result<(Child, String)> {
    let log = std::fs::File::create(work.join("xvfb.log"))?;
    let mut child = Command::new("Xvfb")
        .args(["-displayfd", "1", "-screen", "0", &format!("{}x{HEIGHT}x24", 2 * WIDTH), "-nolisten", "tcp"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start Xvfb")?;
    let stdout = child.stdout.take().context("Xvfb's stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(line) if !line.trim().is_empty() => Ok((child, format!(":{}", line.trim()))),
        _ => {
            let _ = child.kill();
            bail!("Xvfb did not start (see {})", work.join("xvfb.log").display())
        }
    }
}

fn tool_exists(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}
