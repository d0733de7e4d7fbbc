from progressbench.app.cli import main

main()
