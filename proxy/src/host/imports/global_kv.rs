//! `weft:filter/global-kv`: keys shared by every proxy on the global backend
//! (`shared_state.global`, Redis). The functions are asynchronous, so a filter
//! importing this interface is called on a fiber and waits for Redis (at most its
//! timeout) without blocking its worker. Without a backend, and while it is
//! unavailable under `on_error: local`, each proxy answers from its own state, under
//! keys apart from the filter's local ones; under `allow` or `deny` a call then fails
//! with `unavailable`.

use crate::config::shared_state::OnError;
use crate::host::bindings::weft::filter::global_kv::{GlobalError, Host};
use crate::host::global::{fallback_key, KvAnswer, KvOp, Unavailable};
use crate::host::state::HostState;
use weft_shared_state::Store;

impl HostState {
    /// The filter's own key for `key`.
    fn own_key(&self, key: &str) -> wasmtime::Result<String> {
        Ok(
            super::shared_state::scoped(&self.identity.state_prefix, &mut String::new(), key)?
                .to_owned(),
        )
    }

    /// Runs `op` on the backend; on this proxy's state (by `local`) when there is
    /// none or it is unavailable and `on_error` is `local`.
    async fn global_kv(
        &self,
        op: KvOp,
        local: impl FnOnce(&mut Store, &str, u64) -> KvAnswer,
    ) -> Result<KvAnswer, GlobalError> {
        let key = match &op {
            KvOp::Get(k) | KvOp::Delete(k) | KvOp::Set(k, ..) | KvOp::SetIfAbsent(k, ..) => {
                fallback_key(k)
            }
        };
        if let Some(g) = self.services.global.load_full() {
            let on_error = g.on_error();
            match g.kv(op).await {
                Ok(answer) => return Ok(answer),
                Err(Unavailable) if on_error != OnError::Local => {
                    return Err(GlobalError::Unavailable)
                }
                Err(Unavailable) => {}
            }
        }
        Ok(self.services.state.with(&key, |s, now| local(s, &key, now)))
    }
}

fn ttl_ms(ttl: Option<u64>) -> Option<u64> {
    ttl.map(|ns| (ns / 1_000_000).max(1))
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, GlobalError>> {
        self.host_calls += 1;
        let key = self.own_key(&key)?;
        let answer = self
            .global_kv(KvOp::Get(key), |s, k, now| {
                KvAnswer::Value(s.kv_get(k, now).map(<[u8]>::to_vec))
            })
            .await;
        Ok(answer.map(|a| match a {
            KvAnswer::Value(v) => v,
            _ => None,
        }))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> wasmtime::Result<Result<(), GlobalError>> {
        self.host_calls += 1;
        let key = self.own_key(&key)?;
        super::shared_state::check_value(&value)?;
        let local_value = value.clone();
        let answer = self
            .global_kv(KvOp::Set(key, value, ttl), |s, k, now| {
                s.kv_set(k, local_value, ttl_ms(ttl), now);
                KvAnswer::Done
            })
            .await;
        Ok(answer.map(|_| ()))
    }

    async fn set_if_absent(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> wasmtime::Result<Result<bool, GlobalError>> {
        self.host_calls += 1;
        let key = self.own_key(&key)?;
        super::shared_state::check_value(&value)?;
        let local_value = value.clone();
        let answer = self
            .global_kv(KvOp::SetIfAbsent(key, value, ttl), |s, k, now| {
                KvAnswer::Changed(s.kv_set_if_absent(k, local_value, ttl_ms(ttl), now))
            })
            .await;
        Ok(answer.map(|a| matches!(a, KvAnswer::Changed(true))))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, GlobalError>> {
        self.host_calls += 1;
        let key = self.own_key(&key)?;
        let answer = self
            .global_kv(KvOp::Delete(key), |s, k, now| {
                KvAnswer::Changed(s.kv_delete(k, now))
            })
            .await;
        Ok(answer.map(|a| matches!(a, KvAnswer::Changed(true))))
    }
}
