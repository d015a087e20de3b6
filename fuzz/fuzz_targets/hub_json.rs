//! The Hugging Face hub's answers: a revision's commit, a tree page and its `Link` header.
#![no_main]

use ferry::ecosystems::model::hub::{commit_of, next_page, tree_files};
use libfuzzer_sys::fuzz_target;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue, LINK};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(sha) = commit_of(body) {
                assert_eq!(sha.len(), 40);
            }
        }
        1 => {
            let _ = tree_files(body);
        }
        _ => {
            let url = Url::parse("https://hub.example/api/models/a/b/tree/main").unwrap();
            let mut headers = HeaderMap::new();
            for line in body.split(|&b| b == b'\n') {
                if let Ok(v) = HeaderValue::from_bytes(line) {
                    headers.append(LINK, v);
                }
            }
            let _ = next_page(&url, headers.get_all(LINK));
        }
    }
});
