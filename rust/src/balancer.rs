//! (balancer: placeholder, being written.)
