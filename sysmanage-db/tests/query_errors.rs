//! Closures may return the error type the host already uses — its own
//! enum, `anyhow::Error` through [`DynError`], a boxed error — and get it
//! back typed; connection-level failures are still recognised through the
//! source chain.

use sysmanage_db::replica::{
    Classified, Consistency, DynError, MemoryCluster, MemoryError, NodeSpec, QueryFailure,
    ReplicaRouter,
};

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("user {0} not found")]
    NotFound(u32),
    #[error("storage failed")]
    Storage(#[source] MemoryError),
}

async fn router() -> (
    MemoryCluster,
    ReplicaRouter<sysmanage_db::replica::MemoryNode>,
) {
    let cluster = MemoryCluster::new();
    let router = ReplicaRouter::builder()
        .monitor(false)
        .primary(NodeSpec::new("p", cluster.add_primary()))
        .replica(NodeSpec::new("r0", cluster.add_replica()))
        .replica(NodeSpec::new("r1", cluster.add_replica()))
        .build()
        .await
        .unwrap();
    (cluster, router)
}

#[tokio::test]
async fn a_host_error_enum_comes_back_typed() {
    let (_cluster, router) = router().await;
    let err = router
        .read(Consistency::Any, |_| async {
            Err::<(), _>(AppError::NotFound(7))
        })
        .await
        .unwrap_err();
    // No downcast: the variant is matched directly.
    assert!(
        matches!(err.query(), Some(AppError::NotFound(7))),
        "{err:?}"
    );
    assert!(!err.is_connection());
}

#[tokio::test]
async fn a_wrapped_connection_failure_is_still_retried_elsewhere() {
    let (cluster, router) = router().await;
    let down = cluster.add_replica();
    down.set_up(false);
    // Every node but r1 fails with a storage error whose source is a
    // connection-level MemoryError: classified through the chain, the read
    // moves to another node instead of failing.
    let id = router
        .read(Consistency::Any, |db| async move {
            if db.id() == 1 {
                Err(AppError::Storage(MemoryError::Down(1)))
            } else {
                Ok(db.id())
            }
        })
        .await
        .unwrap();
    assert_ne!(id, 1);
}

#[tokio::test]
async fn anyhow_and_boxed_errors_work_through_dyn_error() {
    let (_cluster, router) = router().await;
    let err = router
        .write(|_| async {
            let r: anyhow::Result<()> = Err(anyhow::anyhow!("constraint violated"));
            r?;
            Ok::<_, DynError>(())
        })
        .await
        .unwrap_err();
    let source = err.into_query().unwrap();
    assert_eq!(source.to_string(), "constraint violated");
    let boxed = router
        .write(|_| async {
            let e: Box<dyn std::error::Error + Send + Sync> = "boxed".into();
            Err::<(), DynError>(e.into())
        })
        .await
        .unwrap_err();
    assert!(matches!(
        boxed,
        QueryFailure::Query {
            connection: false,
            ..
        }
    ));
    // A host that says what its error is.
    let classified = router
        .read(Consistency::Any, |_| async {
            Err::<(), _>(Classified::connection(
                anyhow::anyhow!("proxy down").into_boxed_dyn_error(),
            ))
        })
        .await
        .unwrap_err();
    assert!(classified.is_connection());
    // `?` into the crate's error type erases it.
    let erased: sysmanage_db::Error = classified.into();
    assert!(matches!(
        erased,
        sysmanage_db::Error::Query {
            connection: true,
            ..
        }
    ));
}
