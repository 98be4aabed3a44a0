//! (httpsig: placeholder, being written.)
