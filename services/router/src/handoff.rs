//! The data-moving steps shared by resharding (`reshard.rs`) and shard moves (`moves.rs`):
//! copy a local shard's points page by page, follow its WAL from an LSN, and replay one logged
//! write on another local shard.

use crate::error::RouterError;
use std::future::Future;
use vdb_api::*;
use vdb_client::{ClientError, ShardClient};

/// Points per copied page.
const COPY_PAGE: usize = 256;
/// WAL records per page read.
const WAL_PAGE: usize = 1_000;

/// Why following a WAL stopped.
pub enum TailError {
    /// The LSN to continue from was truncated behind a snapshot: copy again.
    Truncated,
    /// The source did not answer.
    Source(ClientError),
    /// Applying a record failed.
    Apply(RouterError),
}

/// Hands every point of `local` on `src` (vector and payload included), a page at a time, to
/// `sink`; returns what the sink counted.
pub async fn copy_points<F, Fut>(
    src: &ShardClient,
    local: &str,
    mut sink: F,
    err: impl Fn(ClientError) -> RouterError,
) -> Result<u64, RouterError>
where
    F: FnMut(Vec<Point>) -> Fut,
    Fut: Future<Output = Result<u64, RouterError>>,
{
    let mut copied = 0;
    let mut offset = None;
    loop {
        let ask = ScrollPoints {
            limit: COPY_PAGE,
            offset,
            with_payload: true,
            with_vector: true,
            ..Default::default()
        };
        let page = src.scroll(local, &ask).await.map_err(&err)?;
        let points: Vec<Point> = page
            .points
            .into_iter()
            .map(|r| Point {
                id: r.id,
                vector: r.vector.unwrap_or_default(),
                payload: r.payload.map(serde_json::Value::Object),
            })
            .collect();
        if !points.is_empty() {
            copied += sink(points).await?;
        }
        match page.next_offset {
            Some(next) => offset = Some(next),
            None => return Ok(copied),
        }
    }
}

/// Hands every write `local` on `src` logged after `*lsn` to `apply`, in order, until caught
/// up; `*lsn` follows what was applied.
pub async fn follow_wal<F, Fut>(
    src: &ShardClient,
    local: &str,
    lsn: &mut u64,
    mut apply: F,
) -> Result<(), TailError>
where
    F: FnMut(WalEntry) -> Fut,
    Fut: Future<Output = Result<u64, RouterError>>,
{
    loop {
        let page = match src.wal(local, *lsn, Some(WAL_PAGE)).await {
            Ok(p) => p,
            Err(e) if e.code() == Some(ErrorCode::WalTruncated) => {
                return Err(TailError::Truncated)
            }
            Err(e) => return Err(TailError::Source(e)),
        };
        let Some(last) = page.records.last().map(|r| r.lsn) else { return Ok(()) };
        for record in page.records {
            apply(record.op).await.map_err(TailError::Apply)?;
        }
        *lsn = last;
    }
}

/// Applies one logged write to `local` on `dst`; returns the points it touched.
pub async fn replay(dst: &ShardClient, local: &str, op: WalEntry) -> Result<u64, ClientError> {
    let affected = |w: WriteResult| w.affected;
    match op {
        WalEntry::Upsert { points } => {
            dst.upsert(local, &UpsertPoints { points }).await.map(affected)
        }
        WalEntry::Delete { ids } => dst
            .delete_points(local, &PointSelector { ids: Some(ids), filter: None })
            .await
            .map(affected),
        WalEntry::SetPayload { ids, payload } => dst
            .set_payload(local, &SetPayload { payload, ids: Some(ids), filter: None })
            .await
            .map(affected),
        WalEntry::OverwritePayload { ids, payload } => dst
            .overwrite_payload(local, &SetPayload { payload, ids: Some(ids), filter: None })
            .await
            .map(affected),
        WalEntry::DeletePayload { ids, keys } => dst
            .delete_payload(local, &DeletePayload { keys, ids: Some(ids), filter: None })
            .await
            .map(affected),
        WalEntry::CreateIndex { field, kind } => {
            dst.create_index(local, &CreatePayloadIndex { field, kind }).await.map(|_| 0)
        }
        WalEntry::DropIndex { field } => match dst.drop_index(local, &field).await {
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(0),
            r => r.map(|_| 0),
        },
    }
}
