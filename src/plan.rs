//! What a pull would fetch, without fetching it (`--dry-run`): every blob, wheel,
//! package and file the spec resolves to, where it comes from, what it must hash to,
//! and whether the store already holds it. Resolving fetches only metadata (manifests,
//! index pages, repodata, the hub's tree); nothing is written to the store.

use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// `image`, `python`, `conda` or `model`.
    pub ecosystem: &'static str,
    /// A file name, or a blob's short digest.
    pub name: String,
    /// Where it would come from (credentials stripped).
    pub origin: String,
    /// `sha256:<hex>`, or `md5:<hex>` / `git:<oid>` when that is all the source gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The store holds it already: nothing to fetch.
    pub present: bool,
}

/// Items collected while the spec resolves (ecosystems resolve concurrently).
#[derive(Default)]
pub struct Plan {
    items: Mutex<Vec<Item>>,
}

impl Plan {
    pub fn add(&self, item: Item) {
        self.items.lock().expect("plan lock").push(item);
    }

    pub fn items(&self) -> Vec<Item> {
        self.items.lock().expect("plan lock").clone()
    }

    fn totals(&self) -> (usize, u64, usize, u64) {
        let items = self.items();
        let (fetch, have): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|i| !i.present);
        let bytes = |v: &[&Item]| v.iter().filter_map(|i| i.size).sum::<u64>();
        (fetch.len(), bytes(&fetch), have.len(), bytes(&have))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (fetch, fetch_bytes, have, have_bytes) = self.totals();
        serde_json::json!({
            "items": self.items(),
            "fetch": {"count": fetch, "bytes": fetch_bytes},
            "present": {"count": have, "bytes": have_bytes},
        })
    }

    /// One line an item, then the totals.
    pub fn to_text(&self, human: impl Fn(u64) -> String) -> String {
        let mut out = String::new();
        for i in self.items() {
            out.push_str(&format!(
                "{}  {:<6}  {}  {}  {}  from {}\n",
                if i.present { "have " } else { "fetch" },
                i.ecosystem,
                i.name,
                i.digest.as_deref().unwrap_or("-"),
                i.size.map(&human).unwrap_or_else(|| "size unknown".into()),
                i.origin
            ));
        }
        let (fetch, fetch_bytes, have, have_bytes) = self.totals();
        out.push_str(&format!(
            "{fetch} to fetch ({}), {have} already in the store ({}); nothing was fetched or written\n",
            human(fetch_bytes),
            human(have_bytes)
        ));
        out
    }
}
