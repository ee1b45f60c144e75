"""The foundation every layer reads: settings (the only reader of the environment),
errors, modes, API versions and warehouse URLs."""
