"""CloudWatch Logs Insights for the local AWS: the query language, compiled and run over
the events moto's logs backend holds (see localaws/README.md, "Logs Insights")."""
