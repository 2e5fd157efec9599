//! What choosing an endpoint costs: one pick (and its release) per policy over a
//! cluster of 100 endpoints, equal weights and mixed weights (1 to 5). The hashing
//! policies get a key per pick, hashed from a header-sized value as the proxy does;
//! `sick` marks 10 of the 100 unavailable (failing health checks or ejected), so picks
//! that land on them move on by the policy's rule.
//! Goal: under 100 ns for every policy.
//!
//! Run: `cargo bench -p weft --bench balance`. Numbers are in benches/README.md.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use weft::bench_hooks::{hash_bytes, Balancer, FAILED_CHECK};
use weft::config::model::LbPolicy;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn endpoints(weighted: bool) -> Vec<(SocketAddr, u32)> {
    (0..100u32)
        .map(|i| {
            let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 8080));
            (addr, if weighted { i % 5 + 1 } else { 1 })
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let keys: Vec<String> = (0..1024).map(|i| format!("user-{i:08}")).collect();
    for (weighted, sick) in [(false, false), (true, false), (false, true)] {
        for (name, policy) in [
            ("round_robin", LbPolicy::RoundRobin),
            ("random", LbPolicy::Random),
            ("least_request", LbPolicy::LeastRequest),
            ("ring_hash", LbPolicy::RingHash),
            ("maglev", LbPolicy::Maglev),
        ] {
            let b = Balancer::new(policy, &endpoints(weighted));
            if sick {
                for e in b.endpoints().iter().step_by(10) {
                    b.mark(e, FAILED_CHECK, true);
                }
            }
            let hashing = policy.hashes();
            let label = format!(
                "lb_pick/{name}/{}",
                match (weighted, sick) {
                    (_, true) => "sick",
                    (true, _) => "weighted",
                    _ => "equal",
                }
            );
            let mut i = 0usize;
            c.bench_function(&label, |bench| {
                bench.iter(|| {
                    i = i.wrapping_add(1);
                    let key = hashing.then(|| hash_bytes(keys[i % keys.len()].as_bytes()));
                    black_box(b.pick(black_box(key)).map(|p| p.addr()))
                })
            });
        }
    }
}

criterion_group!(benches, picks);
criterion_main!(benches);
