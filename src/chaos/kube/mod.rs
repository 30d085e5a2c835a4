//! Kubernetes backend (in progress).
