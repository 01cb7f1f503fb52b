//! Search of the messages a caller may read (PostgreSQL full text, Russian
//! and English).

use crate::{Error, Result, Service};
use parley_core::protocol::{SearchPage, SearchQuery};
use parley_core::{validate, InfobaseActor, UserActor};
use parley_store::{Reader, SearchParams};

impl Service {
    fn search_params(&self, q: SearchQuery) -> Result<SearchParams> {
        let lim = &self.cfg.limits;
        let query = validate::text("query", &q.query, lim.max_search_query_chars)?;
        let limit = q.limit.unwrap_or(lim.default_search_page);
        if !(1..=lim.max_search_page).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {} (limits.max_search_page)",
                lim.max_search_page
            )));
        }
        if let (Some(f), Some(t)) = (q.from, q.to) {
            if f >= t {
                return Err(Error::invalid("from: must be before to"));
            }
        }
        Ok(SearchParams {
            query,
            conversation: q.conversation_id,
            author: q.author_id,
            from: q.from,
            to: q.to,
            cursor: q.cursor,
            limit,
            candidates: self.cfg.limits.search_candidates,
        })
    }

    /// Messages of the user's conversations it may read (`recipients`
    /// apply; deleted ones never), best matches first.
    pub async fn search_for_user(&self, me: &UserActor, q: SearchQuery) -> Result<SearchPage> {
        let p = self.search_params(q)?;
        Ok(self.store.search(Reader::User(me.id()), &p).await?)
    }

    /// What the infobase may read: its own conversations whole, others as
    /// its member users may (docs/api.md "Who owns what").
    pub async fn search_for_infobase(
        &self,
        me: &InfobaseActor,
        q: SearchQuery,
    ) -> Result<SearchPage> {
        let p = self.search_params(q)?;
        Ok(self.store.search(Reader::Infobase(me.id), &p).await?)
    }
}
