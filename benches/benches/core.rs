//! Hot paths of sysmanage-core: the breaker's admission check and sample ingestion.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sysmanage_core::{Backoff, BreakerConfig, CircuitBreaker, SampleBuffer, Timestamp};

fn breaker(c: &mut Criterion) {
    let mut breaker = CircuitBreaker::new(BreakerConfig::default()).expect("valid config");
    let now = Instant::now();
    c.bench_function("breaker/acquire+success", |b| {
        b.iter(|| {
            breaker.try_acquire(black_box(now)).expect("closed");
            breaker.record_success(now);
        });
    });
}

fn backoff(c: &mut Criterion) {
    let backoff = Backoff::default();
    c.bench_function("backoff/delay", |b| {
        b.iter(|| backoff.delay(black_box(7), black_box(0.3)));
    });
}

fn sample_buffer(c: &mut Criterion) {
    let mut buf = SampleBuffer::new(
        NonZeroUsize::new(240).expect("non-zero"),
        Duration::from_secs(3600),
    )
    .expect("valid buffer");
    let mut t = Timestamp::from_secs(1_700_000_000);
    c.bench_function("sample_buffer/push (full, 240 samples)", |b| {
        b.iter(|| {
            t = t + Duration::from_secs(15);
            buf.push(t, black_box(0.5)).expect("finite");
        });
    });
    c.bench_function("sample_buffer/stats over 1 h", |b| {
        b.iter(|| buf.stats_since(black_box(t - Duration::from_secs(3600))));
    });
}

criterion_group!(benches, breaker, backoff, sample_buffer);
criterion_main!(benches);
