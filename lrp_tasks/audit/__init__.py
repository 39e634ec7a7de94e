"""The audit pipeline: prepare an audit once in the driver (``prepare``), explain and commit shards
(``explainer``, ``run``), per-sample statistics and faithfulness (``summaries``, ``batch_metrics``),
the audit-level sanity check (``sanity``), the config's composite (``composite``) and what makes a
store's identity (``identity``). It calls ``lrp_tasks.cluster`` for Ray and never imports Prefect."""
