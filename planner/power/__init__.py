"""Power in the loop: capping policies (POLCA-style clock locking) over server/rack/row power."""
