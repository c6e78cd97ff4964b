//! Real TCP: streaming, client disconnects, timeouts and graceful shutdown.
