-- Database per service: each service gets its own role and its own database, owned by that role.
-- No role can connect to another service's database (CONNECT is revoked from PUBLIC), so a
-- service that reaches for another's tables fails at connect time instead of coupling quietly.
-- Run once by the postgres image on an empty data directory (docker-compose.yml mounts it into
-- /docker-entrypoint-initdb.d). The passwords are for a local stack only.
CREATE ROLE users LOGIN PASSWORD 'users';
CREATE DATABASE users OWNER users;
REVOKE CONNECT ON DATABASE users FROM PUBLIC;

CREATE ROLE inventory LOGIN PASSWORD 'inventory';
CREATE DATABASE inventory OWNER inventory;
REVOKE CONNECT ON DATABASE inventory FROM PUBLIC;

CREATE ROLE payments LOGIN PASSWORD 'payments';
CREATE DATABASE payments OWNER payments;
REVOKE CONNECT ON DATABASE payments FROM PUBLIC;

CREATE ROLE orders LOGIN PASSWORD 'orders';
CREATE DATABASE orders OWNER orders;
REVOKE CONNECT ON DATABASE orders FROM PUBLIC;

CREATE ROLE notifications LOGIN PASSWORD 'notifications';
CREATE DATABASE notifications OWNER notifications;
REVOKE CONNECT ON DATABASE notifications FROM PUBLIC;

-- The monolith of the strangler-fig migration (apps/legacy): its one database, holding users,
-- products, stock and orders, and the CDC outbox its triggers fill.
CREATE ROLE legacy LOGIN PASSWORD 'legacy';
CREATE DATABASE legacy OWNER legacy;
REVOKE CONNECT ON DATABASE legacy FROM PUBLIC;
