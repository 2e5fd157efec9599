//! Background threads with a runtime of their own (reloads, the control agent, the
//! control plane), so that their work never runs on a worker's thread.

use std::future::Future;
use std::thread::JoinHandle;

/// Runs the future `make` returns on a new thread named `name`, with a single-threaded
/// runtime, until it ends.
pub fn spawn_thread<F, Fut>(name: &str, make: F) -> std::io::Result<JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let name = name.to_owned();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(make()),
                Err(e) => tracing::error!(thread = %name, "cannot start a runtime: {e}"),
            }
        })
}
