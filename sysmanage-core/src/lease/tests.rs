//! The elector over the in-memory lease, on paused Tokio time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg() -> LeaseConfig {
    LeaseConfig::new(ms(600)).unwrap() // 400 ms deadline, 100 ms renew/retry/call
}

/// A future that is not polled while `paused` is set: a stopped process.
struct Pausable<F> {
    inner: Pin<Box<F>>,
    paused: Arc<AtomicBool>,
}

impl<F: Future> Future for Pausable<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.paused.load(Ordering::SeqCst) {
            // poll again soon, like a process that is scheduled again later
            let w = cx.waker().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                w.wake();
            });
            return Poll::Pending;
        }
        self.inner.as_mut().poll(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn one_leader_and_renewals_keep_it() {
    let lease = Arc::new(InMemoryLease::new());
    let (a, run) = Elector::start("a", lease.clone(), cfg()).unwrap();
    tokio::spawn(run);
    let t = a.campaign().await.unwrap();
    assert_eq!(t, FencingToken::new(1));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(a.token(), Some(t), "renewals keep the term");
    assert_eq!(a.stats().terms, 1);
    assert_eq!(a.leadership(), Leadership::Leader { token: t });
}

#[tokio::test(start_paused = true)]
async fn a_revoked_term_is_lost_at_the_next_renewal_and_a_follower_takes_over() {
    let lease = Arc::new(InMemoryLease::new());
    let (a, run_a) = Elector::start("a", lease.clone(), cfg()).unwrap();
    let (b, run_b) = Elector::start("b", lease.clone(), cfg()).unwrap();
    tokio::spawn(run_a);
    tokio::spawn(run_b);
    let ta = a.campaign().await.unwrap();
    let b_wins = tokio::spawn({
        let b = b.clone();
        async move { b.campaign().await }
    });
    tokio::time::sleep(ms(50)).await;
    let start = tokio::time::Instant::now();
    lease.revoke(); // the session that held it died
    let tb = b_wins.await.unwrap().unwrap();
    assert!(tb > ta);
    // a learns at its next renewal, then waits a retry interval: b's turn
    assert!(
        start.elapsed() <= cfg().renew_interval + cfg().retry_interval,
        "{:?}",
        start.elapsed()
    );
    assert_eq!(a.token(), None);
    assert_eq!(a.stats().lost, 1);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_backend_makes_the_leader_step_down_before_the_lease_expires() {
    let lease = Arc::new(InMemoryLease::new());
    let (a, run) = Elector::start("a", lease.clone(), cfg()).unwrap();
    tokio::spawn(run);
    let t = a.campaign().await.unwrap();
    let mut watch = a.watch();
    watch.borrow_and_update();
    lease.fail_next(u32::MAX);
    let failing_since = tokio::time::Instant::now();
    watch.changed().await.unwrap();
    assert_eq!(*watch.borrow(), Leadership::Follower);
    // the last successful renewal was at most one renew interval earlier;
    // the step-down comes at its renew deadline, before its ttl
    let stepped = failing_since.elapsed();
    assert!(stepped <= cfg().renew_deadline, "{stepped:?}");
    let holder = lease.holder();
    assert_eq!(
        holder.map(|(_, tok)| tok),
        Some(t),
        "the server lease is still running"
    );
    assert_eq!(a.stats().deadline_passed, 1);
    assert!(a.stats().renew_errors >= 3);
}

#[tokio::test(start_paused = true)]
async fn a_paused_leader_reports_no_token_past_its_deadline_and_is_replaced_within_the_bound() {
    let lease = Arc::new(InMemoryLease::new());
    let paused = Arc::new(AtomicBool::new(false));
    let (a, run_a) = Elector::start("a", lease.clone(), cfg()).unwrap();
    let (b, run_b) = Elector::start("b", lease.clone(), cfg()).unwrap();
    tokio::spawn(Pausable {
        inner: Box::pin(run_a),
        paused: paused.clone(),
    });
    tokio::spawn(run_b);
    let ta = a.campaign().await.unwrap();
    let b_wins = tokio::spawn({
        let b = b.clone();
        async move { b.campaign().await }
    });
    tokio::time::sleep(ms(30)).await;
    paused.store(true, Ordering::SeqCst);
    let paused_at = tokio::time::Instant::now();
    // the driver is frozen, yet the token disappears at the deadline
    tokio::time::sleep(cfg().renew_deadline).await;
    assert_eq!(a.token(), None);
    assert_eq!(
        a.leadership(),
        Leadership::Leader { token: ta },
        "the frozen driver has not noticed"
    );
    let tb = b_wins.await.unwrap().unwrap();
    assert!(tb > ta);
    assert!(
        paused_at.elapsed() <= cfg().takeover_bound(),
        "{:?}",
        paused_at.elapsed()
    );
    paused.store(false, Ordering::SeqCst);
    tokio::time::sleep(ms(200)).await;
    assert_eq!(a.leadership(), Leadership::Follower);
    assert_eq!(a.token(), None);
    assert_eq!(b.token(), Some(tb));
}

#[tokio::test(start_paused = true)]
async fn resign_releases_at_once_and_stop_ends_the_driver() {
    let lease = Arc::new(InMemoryLease::new());
    let (a, run_a) = Elector::start("a", lease.clone(), cfg()).unwrap();
    let driver = tokio::spawn(run_a);
    a.campaign().await.unwrap();
    a.resign().await;
    assert_eq!(lease.holder(), None, "released, not left to expire");
    assert_eq!(a.stats().resigned, 1);
    let t2 = a.campaign().await.unwrap();
    assert_eq!(t2, FencingToken::new(2));
    a.stop().await;
    assert!(matches!(a.campaign().await, Err(crate::Error::NotLeader)));
    driver.await.unwrap();
    assert_eq!(lease.holder(), None);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_driver() {
    let lease = Arc::new(InMemoryLease::new());
    let (a, run_a) = Elector::start("a", lease.clone(), cfg()).unwrap();
    let driver = tokio::spawn(run_a);
    a.campaign().await.unwrap();
    drop(a);
    tokio::time::timeout(Duration::from_secs(1), driver)
        .await
        .expect("the driver ends")
        .unwrap();
    assert_eq!(lease.holder(), None);
}

#[tokio::test(start_paused = true)]
async fn a_grant_that_arrives_after_its_deadline_is_not_used() {
    #[derive(Debug)]
    struct Slow(InMemoryLease);
    #[async_trait::async_trait]
    impl LeaseBackend for Slow {
        fn backend(&self) -> &'static str {
            "slow"
        }
        async fn try_acquire(
            &self,
            holder: &str,
            ttl: Duration,
        ) -> Result<Option<FencingToken>, crate::BoxError> {
            let r = self.0.try_acquire(holder, ttl).await;
            tokio::time::sleep(Duration::from_millis(450)).await;
            r
        }
        async fn renew(
            &self,
            h: &str,
            t: FencingToken,
            ttl: Duration,
        ) -> Result<bool, crate::BoxError> {
            self.0.renew(h, t, ttl).await
        }
        async fn release(&self, h: &str, t: FencingToken) -> Result<(), crate::BoxError> {
            self.0.release(h, t).await
        }
    }
    let lease = Arc::new(Slow(InMemoryLease::new()));
    let mut c = cfg();
    c.call_timeout = ms(600);
    let (a, run_a) = Elector::start("a", lease.clone(), c).unwrap();
    tokio::spawn(run_a);
    let campaign = tokio::time::timeout(Duration::from_secs(3), a.campaign()).await;
    assert!(campaign.is_err(), "never leads on late grants");
    assert_eq!(a.stats().terms, 0);
    a.stop().await;
    assert_eq!(lease.0.holder(), None, "late grants are released");
}

#[test]
fn bad_instance_names_are_rejected() {
    let lease: Arc<dyn LeaseBackend> = Arc::new(InMemoryLease::new());
    assert!(Elector::start("", lease.clone(), cfg()).is_err());
    assert!(Elector::start("x".repeat(201), lease, cfg()).is_err());
}
