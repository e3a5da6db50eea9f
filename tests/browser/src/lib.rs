//! # es-browser: real-browser tests for `es`'s web pages
//!
//! A small, synchronous wrapper over [`headless_chrome`] for tests that must
//! see a page the way a person does: its scripts run, its events fire, and a
//! screenshot shows what it drew. It is test support, never published.
//!
//! ```no_run
//! use es_browser::Browser;
//!
//! let browser = Browser::launch()?;
//! let page = browser.open("http://127.0.0.1:8080/")?;
//! page.click("#refresh")?;
//! page.wait_until("document.querySelectorAll('li').length > 0", "the list")?;
//! assert_eq!(page.text("h1")?, "Streams");
//! let total: u64 = page.eval("Number(document.querySelector('#total').textContent)")?;
//! let png = page.screenshot("streams")?;
//! assert!(page.errors().is_empty(), "{:?} (see {})", page.errors(), png.display());
//! # let _ = total;
//! # Ok::<(), es_browser::BrowserError>(())
//! ```
//!
//! ## Where the browser comes from
//!
//! [`Browser::launch`] looks for `$CHROMIUM`, then `chromium` and
//! `chromium-browser` on `PATH`, then `/usr/bin/chromium`. When none is
//! there it runs the workspace's `scripts/install-chromium` once (it installs
//! Debian's `chromium` package with `apt-get`, as root or through `sudo -n`)
//! and looks again; if that fails too, the error names the script to run.
//! Nothing is ever downloaded by this crate itself: `headless_chrome` is built
//! with its default features, which fetch no browser.
//!
//! The browser runs headless in a 1280x900 window with a fresh temporary
//! profile, and without Chromium's sandbox when the tests run as root
//! (Chromium refuses to start as root otherwise; CI runs as root).
//!
//! ## Screenshots
//!
//! [`Page::screenshot`] writes `<target dir>/browser/<name>.png`, where the
//! target dir is `$CARGO_TARGET_DIR` when set and the workspace's `target/`
//! otherwise, and returns the path: the artifact to look at when a browser
//! test fails.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use headless_chrome::browser::tab::NoElementFound;
use headless_chrome::protocol::cdp::Emulation;
use headless_chrome::protocol::cdp::Log::LogEntryLevel;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::Runtime::{self, ConsoleAPICalledEventTypeOption};
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{LaunchOptions, Tab};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long [`Page::wait_until`] polls before it gives up, unless changed
/// with [`Page::with_wait_limit`].
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// How often [`Page::wait_until`] evaluates its expression.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long the connection to an idle browser is kept, and so how long one
/// protocol call may take: generous, for slow CI machines.
const IDLE_BROWSER_TIMEOUT: Duration = Duration::from_mins(2);

/// The browser window (and so the screenshot) size, in CSS pixels.
pub const WINDOW_SIZE: (u32, u32) = (1280, 900);

/// What went wrong driving the browser.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// No Chromium was found, even after running the install script.
    #[error(
        "no Chromium found (looked at $CHROMIUM, chromium and chromium-browser on PATH, \
         /usr/bin/chromium) and {} did not install one: {why}; \
         run it as root, or set CHROMIUM to a Chromium or Chrome binary",
        script.display()
    )]
    NotFound {
        /// The workspace's install script.
        script: PathBuf,
        /// Why the script did not help.
        why: String,
    },
    /// The browser was found but could not be started or connected to.
    #[error("could not start the browser {}: {detail}", path.display())]
    Launch {
        /// The browser binary.
        path: PathBuf,
        /// Why, with its causes.
        detail: String,
    },
    /// A call to the browser failed (it closed, a navigation failed, …).
    ///
    /// The cause is kept as text: `headless_chrome` reports `anyhow` errors,
    /// whose `Debug` (what a failing test prints) carries a whole backtrace.
    #[error("{action} failed: {detail}")]
    Protocol {
        /// What was being done, e.g. "opening http://127.0.0.1:4000/".
        action: String,
        /// What `headless_chrome` reported, with its causes.
        detail: String,
    },
    /// A JavaScript expression threw.
    #[error("`{expression}` threw: {exception}")]
    Script {
        /// The expression.
        expression: String,
        /// The exception, as the browser describes it.
        exception: String,
    },
    /// An expression's value is not of the type asked for.
    #[error("the value of `{expression}` is {value}, not the type asked for")]
    Decode {
        /// The expression.
        expression: String,
        /// Its value, as JSON.
        value: Value,
        /// Why it did not deserialize.
        #[source]
        source: serde_json::Error,
    },
    /// No element matches a CSS selector.
    #[error("no element matches `{selector}`")]
    NoElement {
        /// The selector.
        selector: String,
    },
    /// An element cannot be given a value (it has no `value` property).
    #[error("`{selector}` matches an element without a value to set")]
    NotAnInput {
        /// The selector.
        selector: String,
    },
    /// [`Page::wait_until`] ran out of time.
    #[error("waited {limit:?} for {what}; the condition was last {last_value}")]
    Timeout {
        /// What was waited for, as the test named it.
        what: String,
        /// The condition's last value, as JSON, or the exception it threw.
        last_value: String,
        /// How long it waited.
        limit: Duration,
    },
    /// A screenshot name that is not a plain file name.
    #[error("screenshot name {name:?} is not a plain file name")]
    ScreenshotName {
        /// The name given.
        name: String,
    },
    /// A screenshot could not be written.
    #[error("could not write the screenshot {}", path.display())]
    Screenshot {
        /// Where it was to go.
        path: PathBuf,
        /// Why it could not.
        #[source]
        source: std::io::Error,
    },
}

/// A running headless Chromium; it is stopped (and its profile removed) when
/// dropped.
pub struct Browser {
    // Dropped first: the browser must be stopped before its profile goes.
    inner: headless_chrome::Browser,
    path: PathBuf,
    _profile: Profile,
}

/// A temporary user-data dir, removed when dropped.
///
/// headless_chrome can make one itself, but it removes it right after
/// killing the browser, while Chromium's helper processes may still be
/// writing there: the removal fails and the profile stays in the temp dir.
/// This one retries for a moment.
struct Profile(PathBuf);

impl Profile {
    /// Creates a fresh, empty profile directory in the system's temp dir.
    fn new() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("es-browser-profile-")
            .tempdir()?;
        Ok(Self(dir.keep()))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        // Chromium's helpers exit within moments of the browser; two
        // seconds is ample, and a profile left behind is only litter.
        for _ in 0..40 {
            match std::fs::remove_dir_all(&self.0) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(POLL_INTERVAL);
                }
                _ => return,
            }
        }
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts a headless Chromium, installing it first if it is missing
    /// (see the [crate docs](crate)).
    ///
    /// # Errors
    ///
    /// [`BrowserError::NotFound`] when no browser is found even after
    /// running the install script, [`BrowserError::Launch`] when it does not
    /// start.
    pub fn launch() -> Result<Self, BrowserError> {
        let path = if let Some(path) = find_chromium() {
            path
        } else {
            install_chromium()?;
            find_chromium().ok_or_else(|| BrowserError::NotFound {
                script: install_script(),
                why: "it ran, but no browser is there afterwards".to_owned(),
            })?
        };
        let profile = Profile::new().map_err(|e| BrowserError::Launch {
            path: path.clone(),
            detail: format!("no temporary profile: {e}"),
        })?;
        let options = LaunchOptions {
            headless: true,
            // Chromium refuses to start as root with its sandbox on ("Running
            // as root without --no-sandbox is not supported"), and CI runs as
            // root; the pages tested are our own, served on loopback.
            sandbox: !running_as_root(),
            window_size: Some(WINDOW_SIZE),
            path: Some(path.clone()),
            user_data_dir: Some(profile.0.clone()),
            idle_browser_timeout: IDLE_BROWSER_TIMEOUT,
            ..LaunchOptions::default()
        };
        let inner = headless_chrome::Browser::new(options).map_err(|e| BrowserError::Launch {
            path: path.clone(),
            detail: format!("{e:#}"),
        })?;
        inner.set_default_timeout(DEFAULT_WAIT_LIMIT);
        Ok(Self {
            inner,
            path,
            _profile: profile,
        })
    }

    /// The browser binary that was started.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `url` in a new tab and waits until it has loaded (its network
    /// is almost idle and `document.readyState` is `complete`).
    ///
    /// Uncaught exceptions, `console.error` calls and error log entries
    /// (failed requests, for instance) are collected from then on: see
    /// [`Page::errors`].
    ///
    /// # Errors
    ///
    /// [`BrowserError::Protocol`] when the tab cannot be opened or the
    /// navigation fails, [`BrowserError::Timeout`] when the page does not
    /// finish loading within [`DEFAULT_WAIT_LIMIT`].
    pub fn open(&self, url: &str) -> Result<Page, BrowserError> {
        let action = || format!("opening {url}");
        let tab = self.inner.new_tab().map_err(|e| protocol(action(), &e))?;
        tab.set_default_timeout(DEFAULT_WAIT_LIMIT);
        let errors = Arc::new(Mutex::new(Vec::new()));
        collect_errors(&tab, &errors).map_err(|e| protocol(action(), &e))?;
        set_viewport(&tab).map_err(|e| protocol(action(), &e))?;
        tab.navigate_to(url).map_err(|e| protocol(action(), &e))?;
        tab.wait_until_navigated()
            .map_err(|e| protocol(action(), &e))?;
        let page = Page {
            tab,
            errors,
            wait_limit: DEFAULT_WAIT_LIMIT,
        };
        // headless_chrome's wait can end on the blank page the tab started
        // with, so also wait for the document to have left it.
        let left_blank = if url == "about:blank" {
            "true"
        } else {
            "location.href !== 'about:blank'"
        };
        page.wait_until(
            &format!("document.readyState === 'complete' && {left_blank}"),
            &action(),
        )?;
        Ok(page)
    }
}

/// One tab of a [`Browser`], showing one page; closed when dropped.
pub struct Page {
    tab: Arc<Tab>,
    errors: Arc<Mutex<Vec<String>>>,
    wait_limit: Duration,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("url", &self.tab.get_url())
            .field("wait_limit", &self.wait_limit)
            .finish_non_exhaustive()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // Nothing to report from a drop: a browser that is already gone has
        // closed the tab anyway.
        let _ = self.tab.close_target();
    }
}

impl Page {
    /// The same page with another limit for [`Page::wait_until`] (and for
    /// `headless_chrome`'s own waits).
    #[must_use]
    pub fn with_wait_limit(mut self, limit: Duration) -> Self {
        self.tab.set_default_timeout(limit);
        self.wait_limit = limit;
        self
    }

    /// The page's current URL.
    pub fn url(&self) -> String {
        self.tab.get_url()
    }

    /// Evaluates the JavaScript `expression` in the page and returns its
    /// value, deserialized from JSON.
    ///
    /// The value is returned by value, as the browser serializes it to JSON:
    /// numbers, strings, booleans, `null`, arrays and plain objects come
    /// back as they are (`undefined` as `null`), so
    /// `page.eval::<Point>("({x: 1, y: 2})")` works directly (wrap an object
    /// literal in parentheses, or it is a block). A promise is awaited.
    /// What JSON cannot hold is lost: `NaN`, `Infinity` and `BigInt`s come
    /// back as `null`, and `Date`s, `Map`s, functions and DOM nodes as `{}`,
    /// so convert them in the expression (`date.toISOString()`,
    /// `Object.fromEntries(map)`, `node.textContent`); an object graph too
    /// deep to copy (`window`) fails with [`BrowserError::Protocol`].
    ///
    /// # Errors
    ///
    /// [`BrowserError::Script`] when the expression throws (or its promise
    /// rejects), [`BrowserError::Decode`] when its value is not a `T`,
    /// [`BrowserError::Protocol`] when the browser cannot be asked.
    pub fn eval<T: DeserializeOwned>(&self, expression: &str) -> Result<T, BrowserError> {
        let value = self.eval_value(expression)?;
        serde_json::from_value(value.clone()).map_err(|source| BrowserError::Decode {
            expression: expression.to_owned(),
            value,
            source,
        })
    }

    /// Polls the JavaScript boolean `expression` every 50 ms until it is
    /// `true`, for at most the page's wait limit ([`DEFAULT_WAIT_LIMIT`]
    /// unless set with [`Page::with_wait_limit`]). An expression that throws
    /// (an element not there yet, say) counts as not true yet.
    ///
    /// # Errors
    ///
    /// [`BrowserError::Timeout`] naming `what` and the expression's last
    /// value when it never became `true`; [`BrowserError::Protocol`] when
    /// the browser cannot be asked.
    pub fn wait_until(&self, expression: &str, what: &str) -> Result<(), BrowserError> {
        let deadline = Instant::now() + self.wait_limit;
        loop {
            let last_value = match self.eval_value(expression) {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(value) => value.to_string(),
                Err(BrowserError::Script { exception, .. }) => format!("throwing {exception}"),
                Err(other) => return Err(other),
            };
            if Instant::now() >= deadline {
                return Err(BrowserError::Timeout {
                    what: what.to_owned(),
                    last_value,
                    limit: self.wait_limit,
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Clicks the first element matching `css_selector` as a user would: it
    /// is scrolled into view and the mouse is pressed and released over its
    /// middle.
    ///
    /// # Errors
    ///
    /// [`BrowserError::NoElement`] when nothing matches,
    /// [`BrowserError::Protocol`] when the click cannot be made.
    pub fn click(&self, css_selector: &str) -> Result<(), BrowserError> {
        let action = || format!("clicking `{css_selector}`");
        self.tab
            .find_element(css_selector)
            .map_err(|e| {
                if e.downcast_ref::<NoElementFound>().is_some() {
                    BrowserError::NoElement {
                        selector: css_selector.to_owned(),
                    }
                } else {
                    protocol(action(), &e)
                }
            })?
            .click()
            .map_err(|e| protocol(action(), &e))?;
        Ok(())
    }

    /// Sets the value of the first `<input>` (text, range, …), `<textarea>`
    /// or `<select>` matching `css_selector`, then dispatches `input` and
    /// `change` events (bubbling) as a user's edit would.
    ///
    /// The value is set through the element's own `value` setter, so pages
    /// that track values by wrapping it see the change too. A range input
    /// clamps and rounds the value to its `min`, `max` and `step`, as it
    /// would for a user.
    ///
    /// # Errors
    ///
    /// [`BrowserError::NoElement`] when nothing matches,
    /// [`BrowserError::NotAnInput`] when the element has no value to set,
    /// [`BrowserError::Script`] when a listener throws.
    pub fn set_value(&self, css_selector: &str, value: &str) -> Result<(), BrowserError> {
        let script = format!(
            "((selector, value) => {{
                const element = document.querySelector(selector);
                if (element === null) return 'no element';
                const setter = Object.getOwnPropertyDescriptor(
                    Object.getPrototypeOf(element), 'value')?.set;
                if (setter === undefined) return 'not an input';
                element.focus();
                setter.call(element, value);
                element.dispatchEvent(new Event('input', {{ bubbles: true }}));
                element.dispatchEvent(new Event('change', {{ bubbles: true }}));
                return 'set';
            }})({}, {})",
            js_string(css_selector),
            js_string(value)
        );
        let outcome: String = self.eval(&script)?;
        let selector = css_selector.to_owned();
        match outcome.as_str() {
            "no element" => Err(BrowserError::NoElement { selector }),
            "not an input" => Err(BrowserError::NotAnInput { selector }),
            _ => Ok(()),
        }
    }

    /// The text of the first element matching `css_selector` (its
    /// `textContent`, without leading and trailing whitespace).
    ///
    /// # Errors
    ///
    /// [`BrowserError::NoElement`] when nothing matches.
    pub fn text(&self, css_selector: &str) -> Result<String, BrowserError> {
        let script = format!(
            "document.querySelector({})?.textContent.trim() ?? null",
            js_string(css_selector)
        );
        self.eval::<Option<String>>(&script)?
            .ok_or_else(|| BrowserError::NoElement {
                selector: css_selector.to_owned(),
            })
    }

    /// How many elements match `css_selector`.
    ///
    /// # Errors
    ///
    /// [`BrowserError::Script`] when the selector is not valid CSS.
    pub fn count(&self, css_selector: &str) -> Result<usize, BrowserError> {
        self.eval(&format!(
            "document.querySelectorAll({}).length",
            js_string(css_selector)
        ))
    }

    /// Takes a PNG screenshot of the page (the window's 1280x900 viewport)
    /// and writes it to `<target dir>/browser/<name>.png` (see the
    /// [crate docs](crate)), returning that path.
    ///
    /// # Errors
    ///
    /// [`BrowserError::ScreenshotName`] when `name` is not a plain file name
    /// (empty, or with a path separator, or `.`/`..`),
    /// [`BrowserError::Protocol`] when the browser cannot take it,
    /// [`BrowserError::Screenshot`] when it cannot be written.
    pub fn screenshot(&self, name: &str) -> Result<PathBuf, BrowserError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
            return Err(BrowserError::ScreenshotName {
                name: name.to_owned(),
            });
        }
        let png = self
            .tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .map_err(|e| protocol(format!("taking the screenshot {name}"), &e))?;
        let dir = target_dir().join("browser");
        let path = dir.join(format!("{name}.png"));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, png))
            .map_err(|source| BrowserError::Screenshot {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }

    /// What went wrong in the page since it was opened: uncaught exceptions
    /// and rejected promises, `console.error` calls, and the browser's error
    /// log entries (a resource that failed to load, for instance, but not the
    /// `/favicon.ico` that Chromium asks for by itself), oldest first. Empty
    /// for a page that ran cleanly.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Evaluates `expression`, returning its value as JSON.
    fn eval_value(&self, expression: &str) -> Result<Value, BrowserError> {
        let answer = self
            .tab
            .call_method(Runtime::Evaluate {
                expression: expression.to_owned(),
                return_by_value: Some(true),
                await_promise: Some(true),
                object_group: None,
                include_command_line_api: None,
                silent: None,
                context_id: None,
                generate_preview: None,
                user_gesture: None,
                throw_on_side_effect: None,
                timeout: None,
                disable_breaks: None,
                repl_mode: None,
                allow_unsafe_eval_blocked_by_csp: None,
                unique_context_id: None,
                serialization_options: None,
            })
            .map_err(|e| protocol(format!("evaluating `{expression}`"), &e))?;
        if let Some(details) = answer.exception_details {
            return Err(BrowserError::Script {
                expression: expression.to_owned(),
                exception: describe_exception(&details),
            });
        }
        Ok(answer.result.value.unwrap_or(Value::Null))
    }
}

/// Subscribes to the tab's exceptions, console errors and error log
/// entries, pushing a line for each onto `errors`.
fn collect_errors(tab: &Tab, errors: &Arc<Mutex<Vec<String>>>) -> anyhow::Result<()> {
    let errors = Arc::clone(errors);
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let line = match event {
            Event::RuntimeExceptionThrown(thrown) => {
                let details = &thrown.params.exception_details;
                // `text` says how it went uncaught: "Uncaught", or
                // "Uncaught (in promise)" for a rejection nobody handled.
                Some(format!("{}: {}", details.text, describe_exception(details)))
            }
            Event::RuntimeConsoleAPICalled(call)
                if call.params.Type == ConsoleAPICalledEventTypeOption::Error =>
            {
                let args: Vec<String> = call.params.args.iter().map(describe_object).collect();
                Some(format!("console.error: {}", args.join(" ")))
            }
            // Chromium asks for /favicon.ico on its own; a page without one
            // has done nothing wrong.
            Event::LogEntryAdded(added)
                if added.params.entry.level == LogEntryLevel::Error
                    && !added.params.entry.url.as_ref().is_some_and(|url| {
                        url.split(['?', '#'])
                            .next()
                            .is_some_and(|path| path.ends_with("/favicon.ico"))
                    }) =>
            {
                let entry = &added.params.entry;
                let mut line = entry.text.clone();
                if let Some(url) = &entry.url {
                    let _ = write!(line, " ({url})");
                }
                Some(line)
            }
            _ => None,
        };
        if let Some(line) = line {
            errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    }))?;
    tab.enable_runtime()?;
    tab.enable_log()?;
    Ok(())
}

/// Makes the tab's viewport the whole [`WINDOW_SIZE`], at one device pixel
/// per CSS pixel. Headless Chromium keeps room for window decorations it
/// does not draw: a 1280x900 window alone gives a 1280x757 viewport.
fn set_viewport(tab: &Tab) -> anyhow::Result<()> {
    let (width, height) = WINDOW_SIZE;
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: 1.0,
        mobile: false,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })?;
    Ok(())
}

/// A line for an exception: its description (message and stack) when the
/// browser gives one, else its text ("Uncaught", …).
fn describe_exception(details: &Runtime::ExceptionDetails) -> String {
    details
        .exception
        .as_ref()
        .map_or_else(|| details.text.clone(), describe_object)
}

/// A console argument or exception as text: its description, else its
/// value.
fn describe_object(object: &Runtime::RemoteObject) -> String {
    match (&object.description, &object.value) {
        (Some(description), _) => description.clone(),
        (None, Some(Value::String(text))) => text.clone(),
        (None, Some(value)) => value.to_string(),
        (None, None) => format!("{:?}", object.Type).to_lowercase(),
    }
}

/// A [`BrowserError::Protocol`] for a failed `action`.
fn protocol(action: String, error: &anyhow::Error) -> BrowserError {
    BrowserError::Protocol {
        action,
        detail: format!("{error:#}"),
    }
}

/// `text` as a JavaScript string literal (JSON strings are valid JS).
fn js_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The browser to start: `$CHROMIUM`, then `chromium` / `chromium-browser`
/// on `PATH`, then `/usr/bin/chromium`.
fn find_chromium() -> Option<PathBuf> {
    let named = std::env::var_os("CHROMIUM").filter(|name| !name.is_empty());
    named
        .iter()
        .map(std::ffi::OsString::as_os_str)
        .chain([OsStr::new("chromium"), OsStr::new("chromium-browser")])
        .find_map(on_path)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|path| path.is_file()))
}

/// `name` itself when it is a path to a file, else the first file of that
/// name in a `PATH` directory.
fn on_path(name: &OsStr) -> Option<PathBuf> {
    let given = Path::new(name);
    if given.components().count() > 1 || given.is_absolute() {
        return Some(given.to_path_buf()).filter(|path| path.is_file());
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The workspace root: this crate lives in its `tests/browser`.
fn workspace_dir() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir)
}

/// The workspace's `scripts/install-chromium`.
fn install_script() -> PathBuf {
    workspace_dir().join("scripts/install-chromium")
}

/// Runs the install script, once per process (tests launch browsers from
/// several threads; only one of them installs, the others wait and share
/// its outcome).
fn install_chromium() -> Result<(), BrowserError> {
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();
    let script = install_script();
    OUTCOME
        .get_or_init(|| match Command::new("bash").arg(&script).status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("it failed ({status})")),
            Err(error) => Err(format!("it could not be run ({error})")),
        })
        .clone()
        .map_err(|why| BrowserError::NotFound { script, why })
}

/// Whether this process runs as root, where Chromium needs `--no-sandbox`.
fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `$CARGO_TARGET_DIR` (relative to the workspace root when relative), else
/// the workspace's `target/`.
fn target_dir() -> PathBuf {
    let workspace = workspace_dir();
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_script_is_where_launch_looks_for_it() {
        let script = install_script();
        assert!(script.is_file(), "{}", script.display());
        let text = std::fs::read_to_string(&script).unwrap_or_default();
        assert!(text.starts_with("#!/usr/bin/env bash"), "{text}");
        assert!(text.contains("apt-get install -y chromium"), "{text}");
    }

    #[test]
    fn strings_reach_javascript_as_literals() {
        assert_eq!(js_string(r#"a "b" \ c"#), r#""a \"b\" \\ c""#);
        assert_eq!(js_string("line\nbreak"), r#""line\nbreak""#);
    }
}
