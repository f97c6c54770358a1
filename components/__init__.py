"""nap-dms-platform components: typed settings, the service catalog, and the resources."""
