//! Tests of the openapi part of the API.
