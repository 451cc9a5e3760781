#!/bin/sh
# Create the shop's database (if missing), schema and seed data. Idempotent.
#   SHOP_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/shop db/init.sh
set -eu
cd "$(dirname "$0")/.."
exec python3 -m app.initdb --create
