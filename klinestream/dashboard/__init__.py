"""The live dashboard: a JSON API over the trader's Cassandra tables and one static page that polls it."""
