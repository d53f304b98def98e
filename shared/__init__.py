"""Infrastructure every Jifen service imports: settings, database, messaging, auth, errors, metrics."""
