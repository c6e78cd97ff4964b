//! electron-updater (the npm package, run by Node) against the update feed: full and differential downloads.
