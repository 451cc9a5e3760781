"""VM sandbox: restore a golden snapshot per change, deploy, expose the app, destroy."""
