//! Tests of the retention part of the API.
