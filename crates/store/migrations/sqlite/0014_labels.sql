-- Workspace labels (`env=prod`, `tier=enterprise`): kept as a JSON object on the workspace for
-- reading, and a row per label for selecting workspaces by label (blueprints' targets, lists).
ALTER TABLE workspaces ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
CREATE TABLE workspace_labels (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (workspace_id, key)
);
CREATE INDEX workspace_labels_by_label ON workspace_labels (key, value, workspace_id);
