"""subgen.pipelines."""
