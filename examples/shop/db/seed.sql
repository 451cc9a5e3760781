-- Diffie Shop seed data. Idempotent (ON CONFLICT DO NOTHING) and deterministic: fixed ids,
-- fixed dates, fixed password salts, and pre-seeded sessions so flows can start signed in.
--   ada@example.com   / analytical-engine   (session cookie shop_session=seeded-session-ada)
--   grace@example.com / cobol-1959          (session cookie shop_session=seeded-session-grace)

INSERT INTO products (id, slug, name, summary, description, price_cents, stock, image, position) VALUES
 (1, 'diffie-mug', 'Diffie Mug', 'A 350 ml stoneware mug for long test runs.',
  'Glazed stoneware, dishwasher safe. Holds enough coffee for one full regression suite.',
  1400, 42, 'mug.svg', 1),
 (2, 'pixel-tee', 'Pixel Tee', 'Soft cotton tee with a one-pixel border.',
  'Organic cotton, regular fit. The border is exactly one pixel wide at every viewport.',
  2400, 18, 'tee.svg', 2),
 (3, 'baseline-notebook', 'Baseline Notebook', 'Dot-grid notebook, 120 pages.',
  'A5, lay-flat binding, numbered pages. For sketching layouts before they shift.',
  950, 60, 'notebook.svg', 3),
 (4, 'snapshot-tote', 'Snapshot Tote', 'A sturdy canvas tote bag.',
  'Heavy canvas with a reinforced base. Fits a laptop, a charger and a golden image.',
  1800, 3, 'tote.svg', 4),
 (5, 'flaky-socks', 'Flaky Socks', 'Two pairs that never match.',
  'Merino blend. Guaranteed to differ on every run, like a badly timed screenshot.',
  1200, 25, 'socks.svg', 5),
 (6, 'regression-hoodie', 'Regression Hoodie', 'Heavyweight zip hoodie.',
  'Brushed fleece, two pockets, a hood big enough to hide from a failing build.',
  4800, 9, 'hoodie.svg', 6),
 (7, 'headless-cap', 'Headless Cap', 'Six-panel cap, one size.',
  'Adjustable strap, embroidered logo. Works with or without a display.',
  1900, 14, 'cap.svg', 7),
 (8, 'viewport-stickers', 'Viewport Stickers', 'Six vinyl stickers, desktop and mobile.',
  'Weatherproof vinyl in six sizes, from 390 to 1280 pixels (roughly).',
  450, 120, 'stickers.svg', 8)
ON CONFLICT (id) DO NOTHING;

INSERT INTO users (id, email, name, password_hash) VALUES
 (1, 'ada@example.com', 'Ada Lovelace',
  'pbkdf2_sha256$100000$6469666669652d73686f702d61646121$00ec667fc1440cabd6137efff762fd5f5d77801ea14a199e8c755ba79404d40d'),
 (2, 'grace@example.com', 'Grace Hopper',
  'pbkdf2_sha256$100000$6469666669652d73686f702d67726365$9750bd45f3d877c24528c1633fe94c11fac3d0f4986ce977246678e4679c6e06')
ON CONFLICT (id) DO NOTHING;

INSERT INTO sessions (token, user_id, created_at) VALUES
 ('seeded-session-ada', 1, '2024-06-01 09:00:00+00'),
 ('seeded-session-grace', 2, '2024-06-01 09:00:00+00')
ON CONFLICT (token) DO NOTHING;

INSERT INTO orders (id, user_id, placed_on, status) VALUES
 (1001, 1, '2024-03-12', 'delivered'),
 (1002, 1, '2024-05-30', 'shipped'),
 (1003, 1, '2024-06-02', 'processing'),
 (1004, 2, '2024-04-18', 'delivered')
ON CONFLICT (id) DO NOTHING;

INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES
 (1001, 1, 2, 1400),
 (1001, 3, 1, 950),
 (1002, 6, 1, 4800),
 (1003, 2, 1, 2400),
 (1003, 8, 2, 450),
 (1004, 7, 1, 1900)
ON CONFLICT (order_id, product_id) DO NOTHING;
