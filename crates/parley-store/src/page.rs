//! Pages read with `LIMIT limit + 1`: the row beyond the page is read only
//! to know whether more are left.

use crate::Result;
use sqlx::postgres::PgRow;

/// The first `limit` rows, mapped, and whether a row beyond them came back.
pub(crate) fn page<T>(
    rows: &[PgRow],
    limit: u32,
    map: impl FnMut(&PgRow) -> Result<T>,
) -> Result<(Vec<T>, bool)> {
    let more = rows.len() > limit as usize;
    let items = rows
        .iter()
        .take(limit as usize)
        .map(map)
        .collect::<Result<Vec<_>>>()?;
    Ok((items, more))
}
