"""Monitoring generated from the catalog: Prometheus' scrape config and alert rules,
Alertmanager's routing, the watcher on the backup host, Grafana's dashboards.

Everything here is a pure function of a `CatalogContext`: adding a service to the catalog adds its
scraping, probes, alerts and panels with no other edit.
"""
