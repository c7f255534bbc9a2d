from sae_paper.cli import main

raise SystemExit(main())
