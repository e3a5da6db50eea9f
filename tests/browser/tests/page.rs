//! es-browser against a real headless Chromium and a tiny page served from
//! this process.

// Tests state their expectations with `expect`: a failure is the report.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use es_browser::{Browser, BrowserError, Page, WINDOW_SIZE};
use serde::Deserialize;
use serde_json::Value;

/// The page under test: a button that changes a text, a text input, a range
/// input whose `input` event writes its value into an element, and an
/// element that a `setTimeout` adds. Every `input` and `change` event is
/// recorded in `window.events`.
const PAGE: &str = r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>es-browser test page</title></head>
<body>
  <h1 id="title">Waiting</h1>
  <button id="greet" onclick="document.getElementById('title').textContent = 'Clicked'">Greet</button>
  <input id="name" type="text">
  <p id="echo"></p>
  <input id="level" type="range" min="0" max="100" step="5" value="10">
  <span id="level-value">10</span>
  <ul><li>one</li><li>two</li><li>three</li></ul>
  <div id="plain">not an input</div>
  <script>
    window.events = [];
    for (const type of ['input', 'change']) {
      document.addEventListener(type, (e) => window.events.push(`${e.type}:${e.target.id}`));
    }
    document.getElementById('name').addEventListener('change', (e) => {
      document.getElementById('echo').textContent = e.target.value;
    });
    document.getElementById('level').addEventListener('input', (e) => {
      document.getElementById('level-value').textContent = e.target.value;
    });
    setTimeout(() => {
      const late = document.createElement('p');
      late.id = 'late';
      late.textContent = 'arrived late';
      document.body.appendChild(late);
    }, 300);
  </script>
</body>
</html>
"#;

/// A page that goes wrong in every way `Page::errors` collects.
const BROKEN: &str = r"<!doctype html>
<html>
<body>
  <p>broken</p>
  <script>
    console.error('something is off', 42);
    console.log('not an error');
    setTimeout(() => { throw new Error('boom'); }, 0);
    Promise.reject(new Error('refused'));
  </script>
</body>
</html>
";

/// Serves `/` (the test page) and `/broken` on 127.0.0.1 from a thread,
/// one thread per connection (Chromium opens connections it may never
/// use); anything else is a 404. Returns the base URL.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    base
}

/// Reads one request and answers it, closing the connection.
fn answer(mut stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers, up to the empty line.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/" => ("200 OK", PAGE),
        "/broken" => ("200 OK", BROKEN),
        _ => ("404 Not Found", "not found"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// A browser and the test page opened in it.
fn open(path: &str) -> (Browser, Page) {
    let base = serve();
    let browser = Browser::launch().expect("launch Chromium");
    let page = browser
        .open(&format!("{base}{path}"))
        .expect("open the test page");
    (browser, page)
}

#[test]
fn a_page_is_driven_as_a_user_would() {
    let (_browser, page) = open("/");
    assert!(page.url().ends_with('/'), "{}", page.url());
    assert_eq!(page.text("#title").expect("title"), "Waiting");

    page.click("#greet").expect("click the button");
    assert_eq!(page.text("#title").expect("title"), "Clicked");

    page.set_value("#name", "Ada \"the first\" Lovelace")
        .expect("type a name");
    assert_eq!(
        page.text("#echo").expect("echo"),
        "Ada \"the first\" Lovelace"
    );

    page.set_value("#level", "65").expect("move the slider");
    assert_eq!(page.text("#level-value").expect("level"), "65");
    let level: String = page
        .eval("document.getElementById('level').value")
        .expect("slider value");
    assert_eq!(level, "65");

    let events: Vec<String> = page.eval("window.events").expect("events");
    assert_eq!(
        events,
        ["input:name", "change:name", "input:level", "change:level"]
    );

    page.wait_until(
        "document.getElementById('late') !== null",
        "the late paragraph",
    )
    .expect("the late paragraph appears");
    assert_eq!(page.text("#late").expect("late"), "arrived late");

    assert_eq!(page.count("li").expect("count"), 3);
    assert_eq!(page.count("li.missing").expect("count"), 0);
    assert_eq!(page.errors(), Vec::<String>::new());
}

#[test]
fn a_range_input_keeps_to_its_steps_and_bounds() {
    let (_browser, page) = open("/");
    page.set_value("#level", "500").expect("past the end");
    assert_eq!(page.text("#level-value").expect("level"), "100");
    page.set_value("#level", "33").expect("between steps");
    assert_eq!(page.text("#level-value").expect("level"), "35");
}

#[test]
fn eval_returns_numbers_strings_and_objects_by_value() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Summary {
        title: String,
        items: Vec<String>,
        viewport: (u32, u32),
    }

    let (_browser, page) = open("/");
    assert_eq!(page.eval::<i64>("6 * 7").expect("number"), 42);
    assert!((page.eval::<f64>("1 / 4").expect("fraction") - 0.25).abs() < f64::EPSILON);
    assert_eq!(
        page.eval::<String>("document.title").expect("string"),
        "es-browser test page"
    );
    let summary: Summary = page
        .eval(
            "({ title: document.getElementById('title').textContent,
                items: [...document.querySelectorAll('li')].map((li) => li.textContent),
                viewport: [window.innerWidth, window.innerHeight] })",
        )
        .expect("object");
    assert_eq!(
        summary,
        Summary {
            title: "Waiting".to_owned(),
            items: vec!["one".to_owned(), "two".to_owned(), "three".to_owned()],
            viewport: WINDOW_SIZE,
        }
    );
    assert_eq!(
        page.eval::<Option<u32>>("undefined").expect("undefined"),
        None
    );
    assert_eq!(
        page.eval::<String>("Promise.resolve('later')")
            .expect("promise"),
        "later"
    );

    match page.eval::<u32>("document.title") {
        Err(BrowserError::Decode { value, .. }) => {
            assert_eq!(value, serde_json::json!("es-browser test page"));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    match page.eval::<u32>("nothing.here") {
        Err(BrowserError::Script { exception, .. }) => {
            assert!(exception.contains("ReferenceError"), "{exception}");
        }
        other => panic!("expected a script error, got {other:?}"),
    }
}

#[test]
fn wait_until_times_out_naming_what_it_waited_for() {
    let (_browser, page) = open("/");
    let page = page.with_wait_limit(Duration::from_millis(300));
    match page.wait_until("document.title === 'never'", "a title that never comes") {
        Err(error @ BrowserError::Timeout { .. }) => {
            let BrowserError::Timeout {
                what, last_value, ..
            } = &error
            else {
                unreachable!()
            };
            assert_eq!(what, "a title that never comes");
            assert_eq!(last_value, "false");
            assert!(
                error.to_string().contains("a title that never comes"),
                "{error}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    match page.wait_until("missing.thing", "a value that throws") {
        Err(BrowserError::Timeout { last_value, .. }) => {
            assert!(last_value.contains("ReferenceError"), "{last_value}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn missing_elements_non_inputs_and_unreachable_pages_are_named() {
    let (browser, page) = open("/");
    for result in [
        page.click("#nowhere"),
        page.set_value("#nowhere", "x"),
        page.text("#nowhere").map(drop),
    ] {
        match result {
            Err(BrowserError::NoElement { selector }) => assert_eq!(selector, "#nowhere"),
            other => panic!("expected no element, got {other:?}"),
        }
    }
    match page.set_value("#plain", "x") {
        Err(BrowserError::NotAnInput { selector }) => assert_eq!(selector, "#plain"),
        other => panic!("expected not an input, got {other:?}"),
    }
    // A port that was free a moment ago, and that nothing listens on now.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port");
    match browser.open(&format!("http://{closed}/")) {
        Err(error @ BrowserError::Protocol { .. }) => {
            let message = error.to_string();
            assert!(message.contains(&closed.to_string()), "{message}");
            assert!(message.contains("ERR_CONNECTION_REFUSED"), "{message}");
        }
        other => panic!("expected a failed navigation, got {other:?}"),
    }
    match page.count("li[") {
        Err(BrowserError::Script { exception, .. }) => {
            assert!(exception.contains("SyntaxError"), "{exception}");
        }
        other => panic!("expected a script error, got {other:?}"),
    }
}

#[test]
fn a_screenshot_is_a_png_of_the_window() {
    let (_browser, page) = open("/");
    let path = page.screenshot("es-browser-self-test").expect("screenshot");
    assert!(
        path.ends_with("browser/es-browser-self-test.png"),
        "{}",
        path.display()
    );
    let png = std::fs::read(&path).expect("read the screenshot");
    assert!(png.len() > 24, "{} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The first chunk is IHDR: width and height, big-endian, at 16..24.
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
    assert_eq!((width, height), WINDOW_SIZE);

    assert!(matches!(
        page.screenshot("../escape"),
        Err(BrowserError::ScreenshotName { .. })
    ));
}

#[test]
fn errors_collects_exceptions_console_errors_and_failed_loads() {
    let (_browser, page) = open("/broken");
    // The uncaught exception comes from a timer, after the load.
    page.wait_until("true", "nothing").expect("trivially true");
    page.eval::<Value>("fetch('/missing').then((r) => r.status)")
        .expect("a request that 404s");
    let expected = ["console.error: something is off 42", "Error: boom", "404"];
    let seen_all = |errors: &[String]| {
        expected
            .iter()
            .all(|wanted| errors.iter().any(|e| e.contains(wanted)))
    };
    // Events arrive asynchronously; the deadline only turns a hang into a
    // failure.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen_all(&page.errors()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let errors = page.errors();
    assert!(seen_all(&errors), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("404") && e.contains("/missing")),
        "{errors:?}"
    );
    assert!(
        !errors.iter().any(|e| e.contains("not an error")),
        "{errors:?}"
    );
}
