// Empty: this project exists only to be scanned (see Cargo.toml).
