//! (router: placeholder, being written.)
