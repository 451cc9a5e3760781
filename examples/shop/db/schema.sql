-- Diffie Shop schema. Idempotent: safe to run on every deploy.

CREATE TABLE IF NOT EXISTS products (
    id          integer PRIMARY KEY,
    slug        text NOT NULL UNIQUE,
    name        text NOT NULL,
    summary     text NOT NULL,
    description text NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents >= 0),
    stock       integer NOT NULL DEFAULT 0,
    image       text NOT NULL,
    position    integer NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS users (
    id            integer PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    name          text NOT NULL,
    password_hash text NOT NULL
);

CREATE TABLE IF NOT EXISTS sessions (
    token      text PRIMARY KEY,
    user_id    integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id        integer PRIMARY KEY,
    user_id   integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    placed_on date NOT NULL,
    status    text NOT NULL CHECK (status IN ('processing', 'shipped', 'delivered'))
);

CREATE TABLE IF NOT EXISTS order_items (
    order_id         integer NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id       integer NOT NULL REFERENCES products (id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents integer NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE INDEX IF NOT EXISTS orders_user_id ON orders (user_id);
CREATE INDEX IF NOT EXISTS sessions_user_id ON sessions (user_id);
