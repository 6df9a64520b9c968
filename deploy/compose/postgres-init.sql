-- The old estate kept notifications in a database of their own; Kassa's PostgreSQL mirror writes there.
CREATE DATABASE notification_service OWNER kassa;
