"""One partition per plan: the partition key is the plan id."""

from dagster import DynamicPartitionsDefinition

PLANS_PARTITIONS_NAME = "plans"
plans_partitions = DynamicPartitionsDefinition(name=PLANS_PARTITIONS_NAME)
