"""What users see: Plotly charts for the app, Pillow figures for the CLI, tables and PNG reports."""
