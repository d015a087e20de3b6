//! A Python simple index project page: PEP 691 JSON and PEP 503 HTML.
#![no_main]

use ferry::ecosystems::python::index::{HTML_TYPE, JSON_TYPE, parse_page};
use libfuzzer_sys::fuzz_target;
use reqwest::Url;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let body = String::from_utf8_lossy(body);
    let page = Url::parse("https://index.example/simple/six/").unwrap();
    let content_type = match kind % 3 {
        0 => JSON_TYPE,
        1 => HTML_TYPE,
        _ => "text/html",
    };
    if let Ok(files) = parse_page(&page, content_type, &body) {
        for f in files {
            assert!(!f.filename.is_empty());
            assert!(f.url.fragment().is_none());
        }
    }
});
