"""Row power oversubscription: servers per row and capping thresholds under a power budget."""
