//! The web page in a real browser: headless Chromium driven over WebDriver by
//! chromedriver (Debian's `chromium` and `chromium-driver`, which
//! `scripts/install-browser` installs).

use super::{Server, TOKEN};
use crate::common::Workspace;
use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the page may take to show what a step waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// A chromedriver on a free loopback port; it dies with the test process.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new("chromedriver");
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .expect("chromedriver (run scripts/install-browser)");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut lines = stdout.lines();
        let started = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("started successfully"));
        assert!(started, "chromedriver did not start");
        std::thread::spawn(move || lines.for_each(drop));
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A headless Chromium session.
    async fn browser(&self) -> Client {
        let options = serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1100"],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `<target>/tmp/page-screenshots/`.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("page-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Waits until the element `css` is on the page.
async fn element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
}

/// Waits until the element `css` is on the page; returns its text. The page redraws
/// parts of itself as the run goes: an element found just before is looked up again.
async fn text_of(browser: &Client, css: &str) -> String {
    loop {
        match element(browser, css).await.text().await {
            Err(e) if e.is_stale_element_reference() => continue,
            read => return read.unwrap(),
        }
    }
}

/// Waits until the element `css` is on the page and clicks it (see [`text_of`]).
async fn click(browser: &Client, css: &str) {
    loop {
        match element(browser, css).await.click().await {
            Err(e) if e.is_stale_element_reference() => continue,
            clicked => return clicked.unwrap(),
        }
    }
}

#[test]
fn the_page_starts_plan_review_shows_its_requests_live_and_answers_them() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let driver = ChromeDriver::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let browser = driver.browser().await;
        // On a task of its own, so that the browser is closed whatever the flow does.
        let (flow_browser, base) = (browser.clone(), server.base.clone());
        let flow = tokio::spawn(async move { plan_review_in(&flow_browser, &base).await });
        let result = tokio::time::timeout(Duration::from_secs(300), flow).await;
        browser.close().await.ok();
        match result.expect("the page flow finishes within 5 minutes") {
            Ok(()) => {}
            Err(failed) => std::panic::resume_unwind(failed.into_panic()),
        }
    });
}

async fn plan_review_in(browser: &Client, base: &str) {
    browser
        .goto(&format!("{base}/?token={TOKEN}"))
        .await
        .unwrap();
    // The start form lists the workflows.
    text_of(browser, "#start-workflow option[value='plan_review']").await;
    let select = browser.find(Locator::Css("#start-workflow")).await.unwrap();
    select.select_by_value("plan_review").await.unwrap();
    let input = browser.find(Locator::Css("#start-input")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys("\"launch the beta\"").await.unwrap();
    click(browser, "#start-button").await;

    // The run's page: the first plan appears live, to be reviewed.
    let first = ".request[data-request='planner:0:1']";
    let body = text_of(browser, &format!("{first} .body")).await;
    assert!(body.contains("launch the beta"), "{body}");
    assert_eq!(text_of(browser, "#run-status.paused").await, "paused");
    text_of(browser, "#graph .node[data-executor='planner']").await;
    screenshot(browser, "1-first-plan").await;

    let feedback = browser
        .find(Locator::Css(&format!("{first} .feedback")))
        .await
        .unwrap();
    feedback.send_keys("add a rollback step").await.unwrap();
    click(browser, &format!("{first} .reject")).await;

    // The revised plan comes back for review, with the feedback in it.
    let second = ".request[data-request='planner:1:1']";
    let body = text_of(browser, &format!("{second} .body")).await;
    assert!(body.contains("rollback"), "{body}");
    screenshot(browser, "2-revised-plan").await;
    click(browser, &format!("{second} .approve")).await;

    // Completed: the output and the checkpoint tree are shown.
    text_of(browser, "#run-status.completed").await;
    let output = text_of(browser, "#outputs pre").await;
    assert!(output.contains("\"rounds\": 2"), "{output}");
    let events = browser
        .find_all(Locator::Css("#events li[data-event='run_completed']"))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let checkpoints = browser
        .find_all(Locator::Css("#checkpoints li[data-checkpoint]"))
        .await
        .unwrap();
    assert!(checkpoints.len() >= 4, "{} checkpoints", checkpoints.len());
    click(browser, "#checkpoints li.latest > span").await;
    let state = text_of(browser, "#states .state[data-executor='planner'] pre").await;
    assert!(state.contains("round"), "{state}");
    screenshot(browser, "3-completed").await;

    // The list shows the run as completed.
    browser
        .goto(&format!("{base}/?token={TOKEN}#/"))
        .await
        .unwrap();
    let status = text_of(browser, "#runs tbody tr td.status").await;
    assert_eq!(status, "completed");
}
