//! What every handler can reach.

use std::sync::Arc;

use strata_shared::config::Config;
use strata_shared::storage::DynStorage;

use crate::auth::AuthState;
use crate::relay::RelayState;

pub struct AppState {
    pub config: Config,
    pub pool: sqlx::PgPool,
    pub storage: DynStorage,
    pub relay: Arc<RelayState>,
    pub auth: AuthState,
}
