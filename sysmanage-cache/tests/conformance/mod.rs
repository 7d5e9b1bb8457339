//! The conformance suite: one set of checks that every `ClusterCache`
//! backend must pass with identical results. `tests/memory.rs` runs it
//! against `MemoryCache` (time advanced with a `ManualClock`) and
//! `tests/redis_cluster.rs` against `RedisCache` on the live cluster (time
//! advanced by sleeping), each through `conformance_tests!`.

use std::future::Future;
use std::time::Duration;

use sysmanage_cache::{CacheError, ClusterCache, SetOptions, Ttl, Typed, slot};

/// Value size limit both harnesses configure, so the over-limit check is the same.
pub(crate) const VALUE_LIMIT: usize = 4096;

/// What a backend provides to the suite.
pub(crate) trait Harness: Sync {
    /// The backend under test.
    type Cache: ClusterCache;
    /// The cache, configured with `max_value_bytes = VALUE_LIMIT`.
    fn cache(&self) -> &Self::Cache;
    /// A key prefix no other test uses.
    fn prefix(&self) -> &str;
    /// Lets `d` pass for the backend's expiry clock.
    fn advance(&self, d: Duration) -> impl Future<Output = ()> + Send;

    /// `prefix + name` as bytes.
    fn key(&self, name: &str) -> Vec<u8> {
        format!("{}{name}", self.prefix()).into_bytes()
    }
}

fn plain() -> SetOptions {
    SetOptions::default()
}

/// Lets time pass in 50 ms steps until `done` holds, for at most 15 s of
/// the backend's clock. Expiry checks poll rather than sleep a fixed time:
/// a loaded machine may be slow, never early.
async fn eventually<H: Harness, F, Fut>(h: &H, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..300 {
        if done().await {
            return;
        }
        h.advance(Duration::from_millis(50)).await;
    }
    panic!("{what}: still not the case after 15 s");
}

pub(crate) async fn get_set_roundtrip<H: Harness>(h: &H) {
    let c = h.cache();
    let k = h.key("a");
    assert_eq!(c.get(&k).await.unwrap(), None);
    assert!(c.set(&k, b"one", plain()).await.unwrap());
    assert_eq!(c.get(&k).await.unwrap().as_deref(), Some(&b"one"[..]));
    assert!(c.set(&k, b"two", plain()).await.unwrap());
    assert_eq!(c.get(&k).await.unwrap().as_deref(), Some(&b"two"[..]));
    // Binary keys and values, including invalid UTF-8 and an empty value.
    let mut bk = h.key("bin");
    bk.extend_from_slice(&[0xff, 0x00, 0xfe, b'{', 0x80, b'}']);
    let bv = [0u8, 159, 146, 150, 255];
    assert!(c.set(&bk, &bv, plain()).await.unwrap());
    assert_eq!(c.get(&bk).await.unwrap().as_deref(), Some(&bv[..]));
    let ek = h.key("empty");
    assert!(c.set(&ek, b"", plain()).await.unwrap());
    assert_eq!(c.get(&ek).await.unwrap().as_deref(), Some(&b""[..]));
    assert!(c.exists(&ek).await.unwrap());
}

pub(crate) async fn set_nx_xx<H: Harness>(h: &H) {
    let c = h.cache();
    let k = h.key("nx");
    assert!(
        !c.set(&k, b"x", plain().if_present()).await.unwrap(),
        "XX on a missing key"
    );
    assert_eq!(c.get(&k).await.unwrap(), None);
    assert!(c.set(&k, b"first", plain().if_absent()).await.unwrap());
    assert!(
        !c.set(&k, b"second", plain().if_absent()).await.unwrap(),
        "NX on an existing key"
    );
    assert_eq!(c.get(&k).await.unwrap().as_deref(), Some(&b"first"[..]));
    assert!(c.set(&k, b"third", plain().if_present()).await.unwrap());
    assert_eq!(c.get(&k).await.unwrap().as_deref(), Some(&b"third"[..]));
}

pub(crate) async fn ttl_and_expiry<H: Harness>(h: &H) {
    let c = h.cache();
    let k = h.key("ttl");
    assert_eq!(c.ttl(&k).await.unwrap(), Ttl::Missing);
    // Presence is checked with a TTL no loaded machine can outrun…
    c.set(&k, b"v", SetOptions::ttl(Duration::from_secs(30)))
        .await
        .unwrap();
    match c.ttl(&k).await.unwrap() {
        Ttl::ExpiresIn(d) => assert!(d > Duration::ZERO && d <= Duration::from_secs(30), "{d:?}"),
        other => panic!("expected an expiry, got {other:?}"),
    }
    // …expiry with a short one, polled.
    c.set(&k, b"v", SetOptions::ttl(Duration::from_millis(200)))
        .await
        .unwrap();
    let key = &k;
    eventually(h, "the key expires", move || async move {
        c.get(key).await.unwrap().is_none()
    })
    .await;
    assert!(!c.exists(&k).await.unwrap());
    assert_eq!(c.ttl(&k).await.unwrap(), Ttl::Missing);
    // NX succeeds on an expired key.
    assert!(
        c.set(
            &k,
            b"again",
            SetOptions::ttl(Duration::from_secs(60)).if_absent()
        )
        .await
        .unwrap()
    );
    // A plain SET removes the expiry.
    c.set(&k, b"forever", plain()).await.unwrap();
    assert_eq!(c.ttl(&k).await.unwrap(), Ttl::Persistent);
}

pub(crate) async fn expire_and_persist<H: Harness>(h: &H) {
    let c = h.cache();
    let k = h.key("exp");
    assert!(
        !c.expire(&k, Duration::from_secs(5)).await.unwrap(),
        "expire on a missing key"
    );
    c.set(&k, b"v", plain()).await.unwrap();
    assert!(c.expire(&k, Duration::from_secs(5)).await.unwrap());
    match c.ttl(&k).await.unwrap() {
        Ttl::ExpiresIn(d) => assert!(
            d > Duration::from_secs(4) && d <= Duration::from_secs(5),
            "{d:?}"
        ),
        other => panic!("expected an expiry, got {other:?}"),
    }
    assert!(c.expire(&k, Duration::from_millis(200)).await.unwrap());
    let key = &k;
    eventually(h, "the key expires", move || async move {
        !c.exists(key).await.unwrap()
    })
    .await;
}

pub(crate) async fn delete_and_exists<H: Harness>(h: &H) {
    let c = h.cache();
    let k = h.key("del");
    assert!(!c.delete(&k).await.unwrap());
    c.set(&k, b"v", plain()).await.unwrap();
    assert!(c.exists(&k).await.unwrap());
    assert!(c.delete(&k).await.unwrap());
    assert!(!c.exists(&k).await.unwrap());
    assert!(!c.delete(&k).await.unwrap());
}

pub(crate) async fn incr_semantics<H: Harness>(h: &H) {
    let c = h.cache();
    let k = h.key("ctr");
    assert_eq!(c.incr(&k, 5).await.unwrap(), 5);
    assert_eq!(c.incr(&k, -7).await.unwrap(), -2);
    assert_eq!(c.get(&k).await.unwrap().as_deref(), Some(&b"-2"[..]));
    assert_eq!(c.ttl(&k).await.unwrap(), Ttl::Persistent);
    // incr keeps an existing expiry.
    c.expire(&k, Duration::from_secs(30)).await.unwrap();
    c.incr(&k, 1).await.unwrap();
    assert!(matches!(c.ttl(&k).await.unwrap(), Ttl::ExpiresIn(_)));
    let bad = h.key("notint");
    c.set(&bad, b"12abc", plain()).await.unwrap();
    assert!(matches!(
        c.incr(&bad, 1).await,
        Err(CacheError::NotAnInteger)
    ));
    c.set(&bad, b" 1", plain()).await.unwrap();
    assert!(matches!(
        c.incr(&bad, 1).await,
        Err(CacheError::NotAnInteger)
    ));
    let max = h.key("max");
    c.set(&max, i64::MAX.to_string().as_bytes(), plain())
        .await
        .unwrap();
    assert!(matches!(c.incr(&max, 1).await, Err(CacheError::Overflow)));
    assert_eq!(
        c.get(&max).await.unwrap(),
        Some(i64::MAX.to_string().into_bytes())
    );
}

pub(crate) async fn multi_key_cross_slot<H: Harness>(h: &H) {
    let c = h.cache();
    let keys: Vec<Vec<u8>> = (0..300).map(|i| h.key(&format!("m{i}"))).collect();
    let slots: std::collections::BTreeSet<u16> = keys.iter().map(|k| slot(k)).collect();
    assert!(slots.len() > 100, "keys must span many slots");
    let entries: Vec<(Vec<u8>, Vec<u8>)> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(i, k)| (k.clone(), format!("value-{i}").into_bytes()))
        .collect();
    let written = c.mset(&entries, None).await.unwrap();
    assert_eq!(written.len(), entries.len());
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    // Duplicates keep their positions.
    let mut query = keys.clone();
    query.push(keys[1].clone());
    let got = c.mget(&query).await.unwrap();
    assert_eq!(got.len(), query.len());
    for (i, r) in got.iter().enumerate().take(keys.len()) {
        let want = (i % 3 != 0).then(|| format!("value-{i}").into_bytes());
        assert_eq!(r.as_ref().unwrap(), &want, "key {i}");
    }
    assert_eq!(
        got[keys.len()].as_ref().unwrap(),
        &Some(b"value-1".to_vec())
    );
    let deleted = c.mdel(&keys).await.unwrap();
    for (i, r) in deleted.iter().enumerate() {
        assert_eq!(*r.as_ref().unwrap(), i % 3 != 0, "key {i}");
    }
    let after = c.mget(&keys).await.unwrap();
    assert!(after.iter().all(|r| matches!(r, Ok(None))));
}

pub(crate) async fn same_slot_multi_key<H: Harness>(h: &H) {
    let c = h.cache();
    let keys: Vec<Vec<u8>> = (0..20).map(|i| h.key(&format!("{{tag}}s{i}"))).collect();
    let entries: Vec<_> = keys.iter().map(|k| (k.clone(), k.clone())).collect();
    assert!(
        c.mset(&entries, Some(Duration::from_secs(60)))
            .await
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    let got = c.mget(&keys).await.unwrap();
    for (k, r) in keys.iter().zip(&got) {
        assert_eq!(r.as_ref().unwrap().as_ref(), Some(k));
    }
    assert!(matches!(c.ttl(&keys[0]).await.unwrap(), Ttl::ExpiresIn(_)));
}

pub(crate) async fn mset_with_ttl_expires<H: Harness>(h: &H) {
    let c = h.cache();
    let entries: Vec<(Vec<u8>, &[u8])> = (0..10)
        .map(|i| (h.key(&format!("mt{i}")), &b"v"[..]))
        .collect();
    c.mset(&entries, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let keys: Vec<_> = entries.iter().map(|(k, _)| k.clone()).collect();
    assert!(
        c.mget(&keys)
            .await
            .unwrap()
            .iter()
            .all(|r| matches!(r, Ok(Some(_))))
    );
    for k in &keys {
        assert!(
            matches!(c.ttl(k).await.unwrap(), Ttl::ExpiresIn(d) if d <= Duration::from_secs(30)),
            "mset applied the TTL"
        );
    }
    c.mset(&entries, Some(Duration::from_millis(200)))
        .await
        .unwrap();
    let keys = &keys;
    eventually(h, "every key expires", move || async move {
        c.mget(keys)
            .await
            .unwrap()
            .iter()
            .all(|r| matches!(r, Ok(None)))
    })
    .await;
}

pub(crate) async fn bad_input_is_typed<H: Harness>(h: &H) {
    let c = h.cache();
    let none: [&[u8]; 0] = [];
    assert!(matches!(
        c.mget(&none).await,
        Err(CacheError::EmptyKeys { op: "mget" })
    ));
    assert!(matches!(
        c.mdel(&none).await,
        Err(CacheError::EmptyKeys { op: "mdel" })
    ));
    let no_entries: [(&[u8], &[u8]); 0] = [];
    assert!(matches!(
        c.mset(&no_entries, None).await,
        Err(CacheError::EmptyKeys { op: "mset" })
    ));
    let k = h.key("big");
    let big = vec![b'x'; VALUE_LIMIT + 1];
    match c.set(&k, &big, plain()).await {
        Err(CacheError::ValueTooLarge { size, limit }) => {
            assert_eq!((size, limit), (VALUE_LIMIT + 1, VALUE_LIMIT));
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert!(matches!(
        c.mset(&[(k.clone(), big.clone())], None).await,
        Err(CacheError::ValueTooLarge { .. })
    ));
    assert_eq!(
        c.get(&k).await.unwrap(),
        None,
        "rejected value must not be written"
    );
    let ok = vec![b'x'; VALUE_LIMIT];
    assert!(c.set(&k, &ok, plain()).await.unwrap());
    for ttl in [Duration::ZERO, Duration::from_micros(10)] {
        assert!(matches!(
            c.set(&k, b"v", SetOptions::ttl(ttl)).await,
            Err(CacheError::InvalidTtl { .. })
        ));
        assert!(matches!(
            c.expire(&k, ttl).await,
            Err(CacheError::InvalidTtl { .. })
        ));
        assert!(matches!(
            c.mset(&[(k.clone(), b"v".to_vec())], Some(ttl)).await,
            Err(CacheError::InvalidTtl { .. })
        ));
    }
    assert_eq!(
        c.get(&k).await.unwrap(),
        Some(ok),
        "rejected writes must not change the key"
    );
    assert!(matches!(
        c.scan_prefix(b"x", 0).await,
        Err(CacheError::InvalidArgument { .. })
    ));
}

pub(crate) async fn scan_by_prefix<H: Harness>(h: &H) {
    let c = h.cache();
    let mut want: Vec<Vec<u8>> = (0..50).map(|i| h.key(&format!("scan:{i}"))).collect();
    // Glob metacharacters in the prefix must be matched literally.
    want.push(h.key("scan:*?[x]"));
    let entries: Vec<_> = want.iter().map(|k| (k.clone(), b"v".to_vec())).collect();
    c.mset(&entries, None).await.unwrap();
    c.set(&h.key("scanx"), b"v", plain()).await.unwrap();
    c.set(
        &h.key("scan:gone"),
        b"v",
        SetOptions::ttl(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    c.set(&h.key("sc*n:1"), b"v", plain()).await.unwrap();
    let gone = h.key("scan:gone");
    let gone = &gone;
    eventually(h, "scan:gone expires", move || async move {
        !c.exists(gone).await.unwrap()
    })
    .await;
    let mut got = c.scan_prefix(&h.key("scan:"), 1000).await.unwrap();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let limited = c.scan_prefix(&h.key("scan:"), 7).await.unwrap();
    assert_eq!(limited.len(), 7);
    let star = c.scan_prefix(&h.key("scan:*"), 100).await.unwrap();
    assert_eq!(star, vec![h.key("scan:*?[x]")]);
}

pub(crate) async fn typed_roundtrip<H: Harness>(h: &H) {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Profile {
        name: String,
        roles: Vec<String>,
    }
    let t = Typed::new(h.cache());
    let k = h.key("typed");
    let p = Profile {
        name: "ada".into(),
        roles: vec!["admin".into()],
    };
    t.set(&k, &p, plain()).await.unwrap();
    assert_eq!(t.get::<Profile>(&k).await.unwrap(), Some(p));
    // A value that is not the expected type is a codec error, not a miss.
    h.cache().set(&k, b"not json", plain()).await.unwrap();
    assert!(matches!(
        t.get::<Profile>(&k).await,
        Err(CacheError::Codec { .. })
    ));
    let got = t
        .mget::<Profile, _>(&[k.clone(), h.key("typed-missing")])
        .await
        .unwrap();
    assert!(matches!(got[0], Err(CacheError::Codec { .. })));
    assert!(matches!(got[1], Ok(None)));
}

/// One `#[tokio::test]` per check. `$make` is an async expression building
/// a fresh harness for a prefix.
#[macro_export]
macro_rules! conformance_tests {
    ($flavor:meta, $make:path) => {
        $crate::conformance_tests!(@each $flavor, $make;
            get_set_roundtrip, set_nx_xx, ttl_and_expiry, expire_and_persist, delete_and_exists,
            incr_semantics, multi_key_cross_slot, same_slot_multi_key, mset_with_ttl_expires,
            bad_input_is_typed, scan_by_prefix, typed_roundtrip);
    };
    (@each $flavor:meta, $make:path; $($check:ident),*) => {
        mod conformance_suite {
            $(
                #[$flavor]
                async fn $check() {
                    let h = $make(concat!("conf:", stringify!($check), ":")).await;
                    super::conformance::$check(&h).await;
                }
            )*
        }
    };
}
