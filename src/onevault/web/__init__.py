"""What the service serves to browsers: the tracker script (and later the dashboard's pages)."""
