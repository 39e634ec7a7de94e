"""Run in .venv-virelay: open a ViRelAy project with ViRelAy's own loader (``virelay.model``) and
dump everything it reads to an .npz (names to OUT.npz.json), so the test compares it with the audit.
No project import here: this runs in ViRelAy's environment.

    python virelay_load.py PROJECT.yaml OUT.npz
"""

import json
import sys

import numpy as np
from virelay.model import Project, Workspace
from virelay.server import Server

project = Project(sys.argv[1])
out = {}
n = len(project.dataset)
out["sample_data"] = np.stack([project.get_sample(i).data for i in range(n)])
out["sample_label"] = np.array([project.get_sample(i).labels[0].index for i in range(n)])
out["attribution_data"] = np.stack([project.get_attribution(i).data for i in range(n)])
out["attribution_prediction"] = np.stack([project.get_attribution(i).prediction for i in range(n)])
out["heatmap"] = project.get_attribution(0).render_heatmap("blue-white-red", project.get_sample(0).data)
meta = {"name": project.name, "methods": project.get_analysis_methods(), "analyses": {}}
for method in meta["methods"]:
    clusterings = project.get_analysis_clustering_names(method)
    embeddings = project.get_analysis_embedding_names(method)
    categories = [c.name for c in project.get_analysis_categories(method)]
    meta["analyses"][method] = {"clusterings": clusterings, "embeddings": embeddings, "categories": categories}
    for category in categories:
        for clustering in clusterings:
            for embedding in embeddings:
                analysis = project.get_analysis(method, category, clustering, embedding)
                key = f"{method}/{category}/{clustering}/{embedding}"
                out[key + "/index"] = np.asarray(analysis.attribution_indices)
                out[key + "/cluster"] = np.asarray(analysis.clustering)
                out[key + "/embedding"] = np.asarray(analysis.embedding)
                if analysis.eigenvalues is not None:
                    out[key + "/eigenvalue"] = np.asarray(analysis.eigenvalues)
project.close()

# ViRelAy's REST API (its Flask app, through Flask's test client: no port, no browser), as the viewer asks
workspace = Workspace()
workspace.add_project(sys.argv[1])
client = Server(workspace).app.test_client()
api = "/api/projects/0"
meta["status"] = {
    path: client.get(api + path).status_code
    for path in ("", "/dataset/0", "/dataset/0/image", "/attributions/0", "/attributions/0/heatmap?superimpose=true")
}
server = Server(workspace)
meta["heatmaps"] = {  # every colour map the viewer offers, plain and over the input
    f"{name}/{over}": client.get(f"{api}/attributions/0/heatmap?colorMap={name}&superimpose={over}").status_code
    for name in server.color_maps
    for over in ("false", "true")
}
meta["api_analyses"] = {}
for method in meta["methods"]:
    first = meta["analyses"][method]
    query = f"category={first['categories'][0]}&clustering={first['clusterings'][0]}&embedding=spectral"
    response = client.get(f"{api}/analyses/{method}?{query}")
    meta["status"][f"/analyses/{method}"] = response.status_code
    meta["api_analyses"][method] = response.get_json()
workspace.close()
np.savez(sys.argv[2], **out)
with open(sys.argv[2] + ".json", "w", encoding="utf-8") as handle:
    json.dump(meta, handle)
