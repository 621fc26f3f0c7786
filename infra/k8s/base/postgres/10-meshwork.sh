#!/bin/sh
# First start of one service's Postgres (an empty volume): the service's login role, owner of its
# database and nothing else; nobody else may connect to it. The superuser stays inside the pod.
# SERVICE_NAME and SERVICE_DB_PASSWORD come from the StatefulSet (the password from its Secret).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v name="$SERVICE_NAME" -v password="$SERVICE_DB_PASSWORD" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE CONNECT ON DATABASE :"name" FROM PUBLIC;
SQL
