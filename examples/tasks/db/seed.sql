-- The board as every run finds it (loaded once, when the image is built).
INSERT INTO tasks (title, done, created_at) VALUES
  ('Write the release notes', false, '2026-01-05T09:00:00Z'),
  ('Review the checkout redesign', false, '2026-01-06T10:30:00Z'),
  ('Rotate the staging certificates', true, '2026-01-02T16:15:00Z'),
  ('Plan the Q2 roadmap', false, '2026-01-07T08:45:00Z');
